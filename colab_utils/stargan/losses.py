"""The StarGAN v2 objectives (Choi et al., CVPR 2020, Sec. 3.2), as the official release computes them.

Discriminator: non-saturating adversarial loss on real images of their domain and on fakes of the target
domain, plus the R1 penalty on reals (Mescheder et al., ICML 2018, "Which training methods for GANs do
actually converge?"). Generator: adversarial loss, style reconstruction ``|s - E(G(x, s), y)|``, diversity
sensitive loss ``|G(x, s1) - G(x, s2)|`` (maximised, its weight decays linearly to 0) and cycle consistency
``|x - G(G(x, s), E(x, y))|``. The target style ``s`` comes either from a latent code through the mapping
network or from a reference image through the style encoder.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .fan import compute_masks
from .model import Nets


@dataclass
class LossWeights:
    """The lambdas of the paper's full objective (all 1 for CelebA-HQ and AFHQ)."""

    reg: float = 1.0  # R1
    sty: float = 1.0
    ds: float = 1.0   # the current (decayed) diversity weight
    cyc: float = 1.0


def adversarial_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of D's logits against an all-``target`` label (1 real, 0 fake)."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def r1_penalty(logits: torch.Tensor, x_real: torch.Tensor, grad_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``0.5 * E[|grad_x D(x)|^2]`` on real images. ``grad_scale`` multiplies the output before the gradient
    and divides it after (keeps fp16 gradients away from underflow; 1 in fp32/bf16)."""
    (grad,) = torch.autograd.grad(logits.float().sum() * grad_scale, x_real, create_graph=True)
    grad = grad.float() / grad_scale
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def target_style(nets: Nets, y_trg: torch.Tensor, *, z: torch.Tensor | None = None,
                 x_ref: torch.Tensor | None = None) -> torch.Tensor:
    """s = F(z, y) (latent-guided) or E(x_ref, y) (reference-guided)."""
    if (z is None) == (x_ref is None):
        raise ValueError("target_style needs exactly one of z (latent-guided) or x_ref (reference-guided)")
    return nets.mapping_network(z, y_trg) if z is not None else nets.style_encoder(x_ref, y_trg)


def discriminator_loss(nets: Nets, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor, *,
                       z_trg: torch.Tensor | None = None, x_ref: torch.Tensor | None = None, masks=None,
                       weights: LossWeights, autocast=contextlib.nullcontext,
                       grad_scale: float | torch.Tensor = 1.0, r1_discriminator=None):
    """D's loss on reals of ``y_org`` and on fakes translated to ``y_trg``; returns (loss, parts).
    ``r1_discriminator``: what the real pass (the one the R1 penalty differentiates twice) calls, when not
    ``nets.discriminator`` (the trainer's eager module beside a compiled one)."""
    x_real = x_real.detach().requires_grad_()
    with autocast():
        out = (nets.discriminator if r1_discriminator is None else r1_discriminator)(x_real, y_org)
    loss_real = adversarial_loss(out, 1)
    loss_reg = r1_penalty(out, x_real, grad_scale)

    with torch.no_grad(), autocast():
        s_trg = target_style(nets, y_trg, z=z_trg, x_ref=x_ref)
        x_fake = nets.generator(x_real.detach(), s_trg, masks=masks)
    with autocast():
        out = nets.discriminator(x_fake, y_trg)
    loss_fake = adversarial_loss(out, 0)
    loss = loss_real + loss_fake + weights.reg * loss_reg
    return loss, {"real": loss_real.detach(), "fake": loss_fake.detach(), "reg": loss_reg.detach()}


def generator_loss(nets: Nets, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor, *,
                   z_trgs: tuple[torch.Tensor, torch.Tensor] | None = None,
                   x_refs: tuple[torch.Tensor, torch.Tensor] | None = None, masks=None,
                   weights: LossWeights, autocast=contextlib.nullcontext):
    """G's loss for one way of choosing the target style (two latent codes or two references of ``y_trg``);
    returns (loss, parts). Face masks of the fakes (for the cycle) come from ``nets.fan`` when ``masks`` is
    given (the high-pass generator)."""
    if (z_trgs is None) == (x_refs is None):
        raise ValueError("generator_loss needs exactly one of z_trgs or x_refs")
    first, second = ({"z": z} for z in z_trgs) if z_trgs is not None else ({"x_ref": x} for x in x_refs)
    with autocast():
        # adversarial
        s_trg = target_style(nets, y_trg, **first)
        x_fake = nets.generator(x_real, s_trg, masks=masks)
        out = nets.discriminator(x_fake, y_trg)
        # style reconstruction
        s_pred = nets.style_encoder(x_fake, y_trg)
        # diversity sensitive: a second style, its image a constant
        s_trg2 = target_style(nets, y_trg, **second)
        x_fake2 = nets.generator(x_real, s_trg2, masks=masks).detach()
        # cycle consistency: back to the source domain with the source's own style
        fake_masks = compute_masks(nets.fan, x_fake) if masks is not None else None
        s_org = nets.style_encoder(x_real, y_org)
        x_rec = nets.generator(x_fake, s_org, masks=fake_masks)
    loss_adv = adversarial_loss(out, 1)
    loss_sty = (s_pred.float() - s_trg.float()).abs().mean()
    loss_ds = (x_fake.float() - x_fake2.float()).abs().mean()
    loss_cyc = (x_rec.float() - x_real.float()).abs().mean()
    loss = loss_adv + weights.sty * loss_sty - weights.ds * loss_ds + weights.cyc * loss_cyc
    return loss, {"adv": loss_adv.detach(), "sty": loss_sty.detach(), "ds": loss_ds.detach(),
                  "cyc": loss_cyc.detach()}
