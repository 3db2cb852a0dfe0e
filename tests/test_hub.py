"""colab_utils.hub against a local HTTP server on 127.0.0.1 (no internet) and a stand-in for gdown."""
from __future__ import annotations

import hashlib
import http.server
import random
import re
import threading
import zipfile
from pathlib import Path

import gdown
import pytest

from colab_utils import hub
from colab_utils.hub import DownloadError

DATA = random.Random(0).randbytes(3 * 2 ** 20 + 123)
DIGEST = hashlib.sha256(DATA).hexdigest()


class Server:
    """Serves ``files`` with Range support; logs every request; can drop a connection after K bytes once."""

    def __init__(self, files: dict[str, tuple[bytes, str]]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.served = 0
        self.drop_after: dict[str, int] = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                asked = self.headers.get("Range")
                owner.requests.append((path, asked))
                if path not in owner.files:
                    self.send_error(404, "Not Found")
                    return
                data, content_type = owner.files[path]
                start = int(re.match(r"bytes=(\d+)-", asked).group(1)) if asked else 0
                if start >= len(data) and asked:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                if asked:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                drop = owner.drop_after.pop(path, None)
                if drop is not None:  # promise everything, send part, hang up
                    body = body[:drop]
                    self.close_connection = True
                self.wfile.write(body)
                owner.served += len(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({"/files/weights.bin": (DATA, "application/octet-stream"),
                "/page": (b"<html>sign in</html>", "text/html; charset=utf-8")})
    yield s
    s.close()


def test_download_shows_progress_verifies_and_pins_the_hash(server, tmp_path, capsys):
    path = hub.download(f"{server.url}/files/weights.bin", tmp_path, sha256=DIGEST)
    assert path == tmp_path / "weights.bin" and path.read_bytes() == DATA
    err = capsys.readouterr().err
    assert "weights.bin" in err and "100%" in err  # the tqdm bar
    assert DIGEST in (tmp_path / "weights.bin.sha256.json").read_text()
    assert not (tmp_path / "weights.bin.part").exists()


def test_second_call_is_a_cache_hit_without_any_request(server, tmp_path):
    url = f"{server.url}/files/weights.bin"
    first = hub.download(url, tmp_path, progress=False)
    count = len(server.requests)
    assert hub.download(url, tmp_path, progress=False) == first
    assert hub.download(url, tmp_path, sha256=DIGEST, progress=False) == first
    assert len(server.requests) == count == 1
    # A cached file that changed since (damaged on Drive) no longer matches its pinned hash: fetched again.
    damaged = bytearray(first.read_bytes())
    damaged[5] ^= 1
    first.write_bytes(damaged)
    assert hub.download(url, tmp_path, progress=False).read_bytes() == DATA
    assert len(server.requests) == 2


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.drop_after["/files/weights.bin"] = 300_000
    path = hub.download(f"{server.url}/files/weights.bin", tmp_path, sha256=DIGEST, progress=False)
    assert path.read_bytes() == DATA
    assert server.requests == [("/files/weights.bin", None), ("/files/weights.bin", "bytes=300000-")]
    assert server.served == len(DATA)  # nothing was sent twice


def test_partial_file_from_an_earlier_session_is_resumed(server, tmp_path):
    (tmp_path / "weights.bin.part").write_bytes(DATA[:2_000_000])
    path = hub.download(f"{server.url}/files/weights.bin", tmp_path, sha256=DIGEST, progress=False)
    assert path.read_bytes() == DATA
    assert server.requests == [("/files/weights.bin", "bytes=2000000-")]
    assert server.served == len(DATA) - 2_000_000


def test_hash_mismatch_deletes_the_partial_file_and_says_so(server, tmp_path):
    with pytest.raises(DownloadError, match=r"sha256 .* expected 0{64}.*deleted"):
        hub.download(f"{server.url}/files/weights.bin", tmp_path, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_web_page_give_clear_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        hub.download(f"{server.url}/files/nothing.bin", tmp_path, progress=False)
    assert len(server.requests) == 1  # a 404 is not retried
    with pytest.raises(DownloadError, match="web page instead of page.pt"):
        hub.download(f"{server.url}/page", tmp_path, filename="page.pt", progress=False)


def test_unreachable_server_fails_after_retries_and_keeps_the_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)
    (tmp_path / "w.bin.part").write_bytes(b"12345")
    with pytest.raises(DownloadError, match=r"after 2 retries.*w.bin.part \(5 bytes\) is kept"):
        hub.download("http://127.0.0.1:9/w.bin", tmp_path, retries=2, progress=False, timeout=2)


def test_default_destination_is_the_project_downloads_folder(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = hub.download(f"{server.url}/files/weights.bin", progress=False)
    assert path == (tmp_path / "checkpoints" / "downloads" / "weights.bin").resolve()
    assert hub.download(f"{server.url}/files/weights.bin", "new/", progress=False) == Path("new/weights.bin")
    assert hub.download(f"{server.url}/files/weights.bin", "w.pt", progress=False).read_bytes() == DATA


# ---------------------------------------------------------------------------------------------------------
# Google Drive through gdown
# ---------------------------------------------------------------------------------------------------------

FILE_ID = "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"


def test_drive_links_go_through_gdown_with_resume(tmp_path, monkeypatch):
    calls = []

    def fake_download(*args, **kwargs):
        calls.append(kwargs)
        Path(kwargs["output"]).write_bytes(b"weights")
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    link = f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing"
    path = hub.download(link, tmp_path, filename="g.pt", sha256=hashlib.sha256(b"weights").hexdigest(),
                        progress=False)
    assert path.read_bytes() == b"weights"
    assert calls == [{"id": FILE_ID, "output": str(tmp_path / "g.pt.part"), "quiet": True, "resume": True}]
    assert hub.download(FILE_ID, tmp_path, filename="g.pt", progress=False) == path
    assert len(calls) == 1  # cached


def test_gdown_quota_failure_explains_what_to_do(tmp_path, monkeypatch):
    from gdown.exceptions import FileURLRetrievalError

    def refuses(*args, **kwargs):
        raise FileURLRetrievalError("Failed to retrieve file url:\n\n\tToo many users have viewed or downloaded "
                                    "this file recently.")

    monkeypatch.setattr(gdown, "download", refuses)
    with pytest.raises(DownloadError) as caught:
        hub.download("stylegan2_ffhq_config_f", tmp_path, progress=False)
    message = str(caught.value)
    assert FILE_ID in message and "Wait a few hours" in message and "your own Drive" in message
    assert "Failed to retrieve file url" in message


def test_resolve_names_links_and_bad_input():
    assert hub.resolve("stargan_v2_wing").filename == "wing.ckpt"
    for text in (f"https://drive.google.com/file/d/{FILE_ID}/view", f"https://drive.google.com/uc?id={FILE_ID}",
                 f"https://drive.google.com/open?id={FILE_ID}", FILE_ID):
        assert hub.drive_file_id(text) == FILE_ID
    assert hub.drive_file_id("stargan_v2_celeba_hq_typo_name") is None
    with pytest.raises(ValueError, match="unknown file 'stargan_v2_celba_hq'.*stargan_v2_celeba_hq"):
        hub.resolve("stargan_v2_celba_hq")


def test_registry_holds_the_published_sources():
    ids = {"stargan_v2_celeba_hq": "96fmei6c93o8b8t", "stargan_v2_afhq": "etwm810v25h42sn",
           "stargan_v2_wing": "tjxpypwpt38926e", "celeba_hq_dataset": "f7pvjij2xlpff59",
           "afhq_dataset": "t9l9o3vsx2jai3z"}
    for name, dropbox_id in ids.items():
        (url,) = hub.REGISTRY[name].urls
        assert url.startswith(f"https://www.dropbox.com/s/{dropbox_id}/") and url.endswith("?dl=1")
    assert hub.drive_file_id(hub.REGISTRY["stylegan2_ffhq_config_f"].urls[0]) == FILE_ID
    for entry in hub.REGISTRY.values():
        assert entry.licence and entry.source and entry.description and entry.filename
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert "stargan_v2_celeba_hq" in hub.table()


# ---------------------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------------------

def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_unpacks_with_progress_once(tmp_path, capsys):
    archive = make_zip(tmp_path / "faces.zip", {"faces/train/a.jpg": b"a" * 5000, "faces/val/b.jpg": b"b"})
    out = hub.extract(archive, tmp_path / "data")
    assert (out / "faces/train/a.jpg").read_bytes() == b"a" * 5000 and (out / "faces/val/b.jpg").exists()
    assert "unzip faces.zip" in capsys.readouterr().err
    (out / "faces/val/b.jpg").unlink()
    hub.extract(archive, tmp_path / "data")  # already unpacked from this very archive: nothing to do
    assert not (out / "faces/val/b.jpg").exists()


def test_extract_refuses_bad_archives(tmp_path):
    evil = make_zip(tmp_path / "evil.zip", {"../outside.txt": b"x"})
    with pytest.raises(ValueError, match="evil.zip.*outside"):
        hub.extract(evil, tmp_path / "data")
    assert not (tmp_path / "outside.txt").exists()
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="broken.zip is not a zip archive"):
        hub.extract(broken, tmp_path / "data")


def test_fetch_dataset_downloads_then_unpacks_to_local_disk(server, tmp_path, monkeypatch):
    zipped = make_zip(tmp_path / "tiny.zip", {"tiny/train/x.png": b"png"}).read_bytes()
    server.files["/tiny.zip"] = (zipped, "application/zip")
    entry = hub.HubFile("tiny_dataset", (f"{server.url}/tiny.zip",), "tiny.zip", None, None, "zip", "test",
                        "test archive", "test")
    monkeypatch.setitem(hub.REGISTRY, "tiny_dataset", entry)
    monkeypatch.chdir(tmp_path)
    out = hub.fetch_dataset("tiny_dataset", tmp_path / "local", progress=False)
    assert (out / "tiny/train/x.png").read_bytes() == b"png"
    assert (tmp_path / "checkpoints" / "downloads" / "tiny.zip").exists()
    with pytest.raises(ValueError, match="not a dataset archive"):
        hub.fetch_dataset("stargan_v2_wing")
