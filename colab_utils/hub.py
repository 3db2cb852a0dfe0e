"""Known pretrained files and datasets: downloaded once, verified, cached in the Drive project folder.

    from colab_utils import hub
    path = hub.download("stargan_v2_celeba_hq")        # MyDrive/colab_utils/downloads/..., fetched once
    data = hub.fetch_dataset("celeba_hq_dataset")       # zip cached on Drive, unpacked to local disk

Google Drive ids and links go through gdown (``gdown.download(id=..., resume=True)``, gdown 5 and 6);
everything else through plain HTTP(S) with ``Range`` requests that resume a ``.part`` file after a dropped
connection. A file whose sha256 is known is verified; one whose hash was never published is pinned on first
download (the hash is written beside it and later reads compare against it). See :data:`REGISTRY`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from colab_utils import runtime

_CHUNK = 1 << 20
_USER_AGENT = "colab_utils-hub/0.1 (+https://github.com/colab-utils/colab_utils)"


class DownloadError(RuntimeError):
    """A download failed or its bytes are not the expected ones; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class HubFile:
    """A file we know how to fetch. ``sha256`` / ``size`` are None where the publisher gave none."""

    name: str
    urls: tuple[str, ...]
    filename: str
    sha256: str | None
    size: int | None
    format: str
    licence: str  # "<short name>: <details>"
    description: str
    source: str


_STARGAN_LICENCE = ("CC BY-NC 4.0: NAVER Corp. licenses the clovaai/stargan-v2 code, pretrained models and datasets "
                    "for non-commercial use with credit")

REGISTRY: dict[str, HubFile] = {f.name: f for f in [
    HubFile("stargan_v2_celeba_hq", ("https://www.dropbox.com/s/96fmei6c93o8b8t/100000_nets_ema.ckpt?dl=1",),
            "stargan_v2_celeba_hq_100000_nets_ema.ckpt", None, None, "stargan_v2_nets_ema", _STARGAN_LICENCE,
            "Official StarGAN v2 CelebA-HQ networks (EMA) after 100k iterations: generator, mapping network, "
            "style encoder; 256 px, 2 domains (female, male), w_hpf=1 (needs stargan_v2_wing)",
            "clovaai/stargan-v2 download.sh, pretrained-network-celeba-hq"),
    HubFile("stargan_v2_afhq", ("https://www.dropbox.com/s/etwm810v25h42sn/100000_nets_ema.ckpt?dl=1",),
            "stargan_v2_afhq_100000_nets_ema.ckpt", None, None, "stargan_v2_nets_ema", _STARGAN_LICENCE,
            "Official StarGAN v2 AFHQ networks (EMA) after 100k iterations; 256 px, 3 domains (cat, dog, wild), "
            "w_hpf=0", "clovaai/stargan-v2 download.sh, pretrained-network-afhq"),
    HubFile("stargan_v2_wing", ("https://www.dropbox.com/s/tjxpypwpt38926e/wing.ckpt?dl=1",),
            "wing.ckpt", None, None, "stargan_v2_fan", _STARGAN_LICENCE,
            "FAN face-landmark network released with StarGAN v2: its heatmaps give the CelebA-HQ generator's "
            "high-pass masks, and it aligns custom faces", "clovaai/stargan-v2 download.sh, wing"),
    HubFile("stargan_v2_celeba_lm_mean", ("https://www.dropbox.com/s/91fth49gyb7xksk/celeba_lm_mean.npz?dl=1",),
            "celeba_lm_mean.npz", None, None, "npz", _STARGAN_LICENCE,
            "Mean CelebA-HQ landmarks used by StarGAN v2's face alignment (--mode align)",
            "clovaai/stargan-v2 download.sh, wing"),
    HubFile("celeba_hq_dataset", ("https://www.dropbox.com/s/f7pvjij2xlpff59/celeba_hq.zip?dl=1",),
            "celeba_hq.zip", None, None, "zip",
            "non-commercial research only: the images derive from CelebA (CUHK's research-only agreement) via "
            "Karras et al.'s CelebA-HQ; distributed in the StarGAN v2 release under CC BY-NC 4.0",
            "CelebA-HQ at 256 px split as StarGAN v2 trains on it: celeba_hq/{train,val}/{female,male}",
            "clovaai/stargan-v2 download.sh, celeba-hq-dataset"),
    HubFile("afhq_dataset", ("https://www.dropbox.com/s/t9l9o3vsx2jai3z/afhq.zip?dl=1",),
            "afhq.zip", None, None, "zip", _STARGAN_LICENCE,
            "Animal Faces-HQ (AFHQ), 512 px: afhq/{train,val}/{cat,dog,wild}",
            "clovaai/stargan-v2 download.sh, afhq-dataset"),
    HubFile("afhq_v2_dataset", ("https://www.dropbox.com/s/vkzjokiwof5h8w6/afhq_v2.zip?dl=1",),
            "afhq_v2.zip", None, None, "zip", _STARGAN_LICENCE,
            "AFHQ v2 (2021 rebuild with Lanczos resizing, PNG): afhq_v2/{train,test}/{cat,dog,wild}",
            "clovaai/stargan-v2 download.sh, afhq-v2-dataset"),
    HubFile("stylegan2_ffhq_config_f", ("https://drive.google.com/uc?id=1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT",),
            "stylegan2-ffhq-config-f.pt", None, None, "rosinality_stylegan2",
            "Nvidia Source Code License-NC: NVIDIA's StyleGAN2 FFHQ config-f weights (non-commercial), trained on "
            "FFHQ (CC BY-NC-SA 4.0), converted to PyTorch with rosinality/stylegan2-pytorch (MIT code)",
            "StyleGAN2 FFHQ 1024 px config-f in the rosinality layout (g_ema, latent_avg): style_dim 512, "
            "n_mlp 8, channel_multiplier 2",
            "Google Drive file linked as 'FFHQ StyleGAN' by omertov/encoder4editing and eladrich/pixel2style2pixel "
            "(rosinality's conversion); rosinality's README links the Drive folder "
            "1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO"),
    # Metric networks (colab_utils.metrics). The torchvision files' names carry their sha256 prefix.
    HubFile("inception_v3_fid",
            ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
             "weights-inception-2015-12-05-6726825d.pth",
             "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
             "pt_inception-2015-12-05-6726825d.pth"),
            "weights-inception-2015-12-05-6726825d.pth",
            "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", None, "inception_fid_pt",
            "Apache-2.0: Google's TensorFlow Inception-v3 (2015-12-05) converted to PyTorch by torch-fidelity",
            "The Inception-v3 that FID and KID are defined with (2048 pool features), for torch-fidelity's "
            "TensorFlow-compatible port",
            "toshas/torch-fidelity release v0.2.0 (URL_INCEPTION_V3); the same file as mseitzer/pytorch-fid's "
            "fid_weights release"),
    HubFile("alexnet_imagenet", ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
            "alexnet-owt-7be5be79.pth", "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", None,
            "torchvision_weights",
            "BSD-3-Clause: torchvision's AlexNet weights, trained on ImageNet (whose terms allow non-commercial "
            "research use)",
            "ImageNet AlexNet (torchvision IMAGENET1K_V1): the backbone of AlexNet-LPIPS, StarGAN v2's diversity "
            "metric", "pytorch/vision, torchvision.models.AlexNet_Weights.IMAGENET1K_V1"),
    HubFile("vgg16_imagenet", ("https://download.pytorch.org/models/vgg16-397923af.pth",),
            "vgg16-397923af.pth", "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", None,
            "torchvision_weights",
            "BSD-3-Clause: torchvision's VGG-16 weights, trained on ImageNet (whose terms allow non-commercial "
            "research use)",
            "ImageNet VGG-16 (torchvision IMAGENET1K_V1): the backbone of VGG-LPIPS",
            "pytorch/vision, torchvision.models.VGG16_Weights.IMAGENET1K_V1"),
]}


# ---------------------------------------------------------------------------------------------------------
# Naming what to fetch
# ---------------------------------------------------------------------------------------------------------

def drive_file_id(text: str) -> str | None:
    """The Google Drive file id in a share link, a ``uc?id=`` URL or a bare id; None if there is none."""
    for pattern in (r"drive\.google\.com/file/d/([\w-]{20,})", r"drive\.google\.com/.*[?&]id=([\w-]{20,})",
                    r"docs\.google\.com/uc\?.*id=([\w-]{20,})"):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    # A bare id: long, and mixing case and digits (so a mistyped registry name is not taken for one).
    if re.fullmatch(r"[\w-]{25,}", text) and re.search(r"[A-Z]", text) and re.search(r"\d", text):
        return text
    return None


def resolve(name_or_url: str, *, filename: str | None = None, sha256: str | None = None) -> HubFile:
    """The :class:`HubFile` for a registry name, an http(s) URL, or a Google Drive link or id."""
    if name_or_url in REGISTRY:
        entry = REGISTRY[name_or_url]
        if sha256 or filename:
            entry = dataclasses.replace(entry, sha256=sha256 or entry.sha256, filename=filename or entry.filename)
        return entry
    file_id = drive_file_id(name_or_url)
    if file_id is not None:
        return HubFile(file_id, (f"https://drive.google.com/uc?id={file_id}",), filename or f"gdrive-{file_id}",
                       sha256, None, "unknown", "see the file's owner", "Google Drive file", name_or_url)
    parsed = urllib.parse.urlparse(name_or_url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        guessed = urllib.parse.unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1])
        if not (filename or guessed):
            raise ValueError(f"cannot tell a file name from {name_or_url}: pass filename=")
        return HubFile(filename or guessed, (name_or_url,), filename or guessed, sha256, None, "unknown",
                       "see the file's source", "web file", name_or_url)
    raise ValueError(f"unknown file {name_or_url!r}: not a registry name ({', '.join(sorted(REGISTRY))}), an "
                     f"http(s) URL, or a Google Drive link or file id")


def table() -> str:
    """The registry as a text table (name, format, licence in short)."""
    width = max(len(n) for n in REGISTRY)
    rows = [f"{'name':<{width}}  {'format':<21}  licence"]
    rows += [f"{f.name:<{width}}  {f.format:<21}  {f.licence.split(':')[0]}" for f in REGISTRY.values()]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------
# Cache bookkeeping: a sidecar pins the hash of what we downloaded
# ---------------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * _CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _pin(path: Path, digest: str) -> None:
    stat = path.stat()
    tmp = _sidecar(path).with_suffix(".tmp")
    tmp.write_text(json.dumps({"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    os.replace(tmp, _sidecar(path))


def _cached_ok(path: Path, entry: HubFile) -> bool:
    """True when ``path`` holds the expected bytes (cheap when the pinned sidecar still matches)."""
    stat = path.stat()
    if entry.size is not None and stat.st_size != entry.size:
        return False
    try:
        pinned = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        pinned = None
    if pinned and (pinned.get("size"), pinned.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
        return entry.sha256 is None or pinned.get("sha256") == entry.sha256
    digest = _sha256(path)
    expected = entry.sha256 or (pinned or {}).get("sha256")
    if expected is not None and digest != expected:
        return False
    _pin(path, digest)
    return True


def _destination(entry: HubFile, dest: str | os.PathLike | None) -> Path:
    if dest is None:
        return runtime.project_dir("downloads") / entry.filename
    folder_given = os.fspath(dest).endswith(("/", os.sep))
    dest = Path(dest)
    if folder_given or dest.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        return dest / entry.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def cached(name_or_url: str, dest: str | os.PathLike | None = None) -> Path | None:
    """The local copy of a file that :func:`download` fetched before (same ``dest`` rules), when it is there
    and verifies; else None. Never downloads and creates no folder, so it is safe to call just to ask."""
    entry = resolve(name_or_url)
    if dest is None:
        final = runtime.project_dir("downloads", create=False) / entry.filename
    else:
        folder_given = os.fspath(dest).endswith(("/", os.sep)) or Path(dest).is_dir()
        final = Path(dest) / entry.filename if folder_given else Path(dest)
    if not final.is_file():
        return None
    return final if _cached_ok(final, entry) else None


# ---------------------------------------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------------------------------------

def download(name_or_url: str, dest: str | os.PathLike | None = None, *, sha256: str | None = None,
             progress: bool = True, filename: str | None = None, retries: int = 4, timeout: float = 60.0) -> Path:
    """Fetch a registry file, URL or Google Drive file once and return its local path.

    ``dest``: a file path, or a folder (existing, or given with a trailing ``/``); default
    ``<project folder>/downloads`` (on Drive when mounted), so the file survives the session. A cached file
    that verifies is returned without any request. ``sha256`` overrides the registry's. A wrong hash deletes
    the partial file and raises :class:`DownloadError`.
    """
    entry = resolve(name_or_url, filename=filename, sha256=sha256)
    final = _destination(entry, dest)
    if final.exists():
        if _cached_ok(final, entry):
            return final
        print(f"{final} does not match the expected file; downloading it again")
        final.unlink()
    part = final.with_name(final.name + ".part")
    errors = []
    for url in entry.urls:
        try:
            file_id = drive_file_id(url)
            if file_id is not None:
                _gdown(file_id, part, entry, progress)
            else:
                _http(url, part, entry, progress, retries, timeout)
            break
        except DownloadError as err:
            errors.append(str(err))
    else:
        raise DownloadError(errors[0] if len(errors) == 1 else "every source failed:\n  " + "\n  ".join(errors))
    digest = _sha256(part)
    size = part.stat().st_size
    if (entry.sha256 is not None and digest != entry.sha256) or (entry.size is not None and size != entry.size):
        part.unlink()
        what = (f"sha256 {digest}, expected {entry.sha256}" if entry.sha256 is not None and digest != entry.sha256
                else f"{size} bytes, expected {entry.size}")
        raise DownloadError(f"{entry.name}: the downloaded file is not the expected one ({what}); the partial "
                            f"download was deleted. The source may have changed or the transfer was damaged: "
                            f"try again, and if it persists, check the source ({entry.source}).")
    os.replace(part, final)
    _pin(final, digest)
    return final


def _gdown(file_id: str, part: Path, entry: HubFile, progress: bool) -> None:
    import gdown

    try:
        out = gdown.download(id=file_id, output=str(part), quiet=not progress, resume=True)
    except Exception as err:  # gdown's exception classes moved between versions; match by name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if type(err).__name__ == "FileURLRetrievalError":
            raise DownloadError(
                f"Google Drive refused to serve {entry.name} (file id {file_id}): too many people downloaded it in "
                f"the last day, or it is not shared publicly. Wait a few hours and try again, or open "
                f"https://drive.google.com/file/d/{file_id}/view in a browser, copy the file to your own Drive "
                f"('Make a copy' or 'Add shortcut to Drive'), and pass the copy's path or id. gdown said: {first}"
            ) from None
        raise DownloadError(f"Google Drive download of {entry.name} (file id {file_id}) failed: "
                            f"{type(err).__name__}: {first}") from None
    if out is None or not part.exists():
        raise DownloadError(f"Google Drive download of {entry.name} (file id {file_id}) produced no file; it may "
                            f"be private or over its download quota: wait, or copy it to your own Drive")


class _Dropped(Exception):
    pass


def _http(url: str, part: Path, entry: HubFile, progress: bool, retries: int, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming it with Range requests; retries dropped connections."""
    bar = None
    attempt = 0
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                    if have and resp.status == 206:
                        total = _total_from_content_range(resp.headers.get("Content-Range"))
                        mode = "ab"
                    else:
                        have, mode = 0, "wb"
                        length = resp.headers.get("Content-Length")
                        total = int(length) if length is not None else None
                    content_type = resp.headers.get("Content-Type", "")
                    if "text/html" in content_type and not entry.filename.endswith((".html", ".htm")):
                        raise DownloadError(f"{url} answered with a web page instead of {entry.filename}: the link "
                                            f"has moved or needs a login ({entry.source})")
                    if bar is None:
                        bar = tqdm(total=total or entry.size, initial=have, unit="B", unit_scale=True,
                                   unit_divisor=1024, desc=entry.filename, disable=not progress)
                    else:
                        bar.reset(total=total or entry.size)
                        bar.update(have)
                    with open(part, mode) as f:
                        while chunk := resp.read(_CHUNK):
                            f.write(chunk)
                            bar.update(len(chunk))
                    got = part.stat().st_size
                    if total is not None and got < total:
                        raise _Dropped(f"connection closed after {got} of {total} bytes")
                    return
            except urllib.error.HTTPError as err:
                if err.code == 416 and have:
                    total = _total_from_content_range(err.headers.get("Content-Range"))
                    if total == have:
                        return  # the partial file was already complete
                    part.unlink()
                    problem = f"the server refused to resume ({err.code}); starting over"
                elif err.code in (401, 403, 404, 410):
                    raise DownloadError(f"{url}: HTTP {err.code} {err.reason}: the file is gone or private "
                                        f"({entry.source})") from None
                else:
                    problem = f"HTTP {err.code} {err.reason}"
            except (_Dropped, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                    socket.timeout) as err:
                problem = f"{type(err).__name__}: {err}"
            attempt += 1
            if attempt > retries:
                kept = (f"; the partial file {part} ({part.stat().st_size} bytes) is kept and the next call resumes "
                        f"it" if part.exists() else "")
                raise DownloadError(f"downloading {entry.filename} from {url} failed after {retries} retries "
                                    f"({problem}){kept}")
            time.sleep(min(2.0 ** (attempt - 1) - 1.0, 10.0))  # 0, 1, 3, 7, 10 s
    finally:
        if bar is not None:
            bar.close()


def _total_from_content_range(value: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------------------

def extract(archive: str | os.PathLike, dest: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Unpack a zip into ``dest`` (default ``./data``: local disk, ``/content/data`` in Colab) with a
    progress bar; a second call with the same archive returns at once. Returns ``dest``."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive} is not a zip archive (an incomplete or damaged download?): delete it and "
                         f"download it again")
    dest = Path(dest) if dest is not None else Path("data")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    stat = archive.stat()
    marker = dest / f".extracted-{archive.name}.json"
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return dest
    except (OSError, ValueError):
        pass
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for member in members:
                target = (root / member.filename).resolve()
                if target != root and root not in target.parents:
                    raise ValueError(f"{archive}: member {member.filename!r} would be written outside {dest}; "
                                     f"refusing to unpack it")
            with tqdm(total=sum(m.file_size for m in members), unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"unzip {archive.name}", disable=not progress) as bar:
                for member in members:
                    target = root / member.filename
                    if member.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as out:
                        while chunk := src.read(_CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
    except zipfile.BadZipFile as err:
        raise ValueError(f"{archive} is damaged ({err}): delete it and download it again") from None
    marker.write_text(json.dumps(stamp))
    return dest


def fetch_dataset(name: str, dest: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Download a registry zip (cached on Drive) and unpack it to local disk (``dest``, default ``./data``)."""
    entry = resolve(name)
    if entry.format != "zip":
        raise ValueError(f"{name} is a {entry.format} file, not a dataset archive; use hub.download({name!r})")
    return extract(download(name, progress=progress), dest, progress=progress)
