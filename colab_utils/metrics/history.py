"""A training run's metric history: what was measured at which kimg, where sessions resumed, which snapshot is
best. Plain values only, so it travels inside a checkpoint's ``extra`` and survives every resume."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path


def due(step: int, batch: int, every_kimg: float | None) -> bool:
    """Whether an evaluation every ``every_kimg`` thousand images falls in training step ``step`` (1-based,
    ``batch`` images each): the step at which the count of images crosses a multiple of the interval. A
    function of the step alone, so a resumed run evaluates at the same kimg as an uninterrupted one."""
    if not every_kimg or every_kimg <= 0 or step < 1:
        return False
    interval = every_kimg * 1000.0
    return math.floor(step * batch / interval + 1e-9) > math.floor((step - 1) * batch / interval + 1e-9)


class MetricHistory:
    """``records``: one dict per evaluation, ``{"step", "kimg", "metric", "value", ...}`` in the order
    measured; ``resumes``: the kimg at which each later session started."""

    def __init__(self, records: list[dict] | None = None, resumes: list[float] | None = None):
        self.records = [dict(r) for r in (records or [])]
        self.resumes = [float(k) for k in (resumes or [])]

    def add(self, step: int, kimg: float, values: Mapping[str, float], **info) -> None:
        """Record ``values`` (metric name -> number) measured at ``step`` / ``kimg``; a repeat of a step
        (a session that died before its checkpoint, measured again after the resume) replaces the old one."""
        self.records = [r for r in self.records if not (r["step"] == step and r["metric"] in values)]
        for name, value in values.items():
            self.records.append({"step": int(step), "kimg": float(kimg), "metric": str(name), "value": float(value),
                                 **info})

    def mark_resume(self, kimg: float) -> None:
        if not self.resumes or self.resumes[-1] != float(kimg):
            self.resumes.append(float(kimg))

    def series(self, metric: str) -> list[tuple[float, float]]:
        """``[(kimg, value), ...]`` of one metric in kimg order."""
        return sorted((r["kimg"], r["value"]) for r in self.records if r["metric"] == metric)

    def metrics(self) -> list[str]:
        return list(dict.fromkeys(r["metric"] for r in self.records))

    def best(self, metric: str) -> dict | None:
        """The record with the lowest value of ``metric`` (the earliest of equal ones), or None."""
        found = [r for r in self.records if r["metric"] == metric]
        return min(found, key=lambda r: (r["value"], r["step"])) if found else None

    def state(self) -> dict:
        return {"records": [dict(r) for r in self.records], "resumes": list(self.resumes)}

    @classmethod
    def from_state(cls, state: Mapping | None) -> "MetricHistory":
        state = state or {}
        return cls(state.get("records"), state.get("resumes"))

    def table(self) -> str:
        """The history as text: one row per evaluated step, one column per metric."""
        names = self.metrics()
        if not names:
            return "no metrics recorded yet"
        rows: dict[int, dict] = {}
        for r in self.records:
            rows.setdefault(r["step"], {"kimg": r["kimg"]})[r["metric"]] = r["value"]
        head = f"{'step':>9} {'kimg':>9} " + " ".join(f"{n:>12}" for n in names)
        lines = [head]
        for step in sorted(rows):
            row = rows[step]
            cells = " ".join(f"{row[n]:>12.4g}" if n in row else f"{'':>12}" for n in names)
            lines.append(f"{step:>9} {row['kimg']:>9.2f} {cells}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None, metrics: list[str] | None = None, title: str | None = None):
        """Each metric against kimg, the session resumes as dashed lines and the best value circled. Returns
        the matplotlib Figure (saved to ``path`` when given)."""
        from matplotlib.figure import Figure

        names = metrics or [n for n in self.metrics() if not n.startswith("kid")] or self.metrics()
        if not names:
            raise ValueError("the history holds no metrics to plot")
        fig = Figure(figsize=(6, 3.2), layout="constrained")
        ax = fig.subplots()
        for i, name in enumerate(names):
            points = self.series(name)
            if not points:
                continue
            ax.plot([k for k, _ in points], [v for _, v in points], "o-", ms=3, color=f"C{i}", label=name)
            best = self.best(name)
            ax.plot([best["kimg"]], [best["value"]], "o", ms=10, mfc="none", color=f"C{i}")
        for j, kimg in enumerate(self.resumes):
            ax.axvline(kimg, ls="--", lw=1, color="grey", label="resumed" if j == 0 else None)
        ax.set_xlabel("kimg (thousands of real images shown)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
        return fig
