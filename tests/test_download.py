"""Tests for core.data.download: flowers download (from a loopback HTTP server), safe extraction, zip uploads.

Only loopback addresses are used (proxies are bypassed); every archive is tiny and built in tmp_path.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

import core.data.download
from core.data.download import (
    MARKER,
    download_flowers,
    extract_zip,
    is_complete,
)
from core.data.flowers import FLOWER_CLASSES, FLOWERS_SHA256, FLOWERS_SIZE, FLOWERS_URL
from core.errors import DataError, DownloadError

CLASSES = ("daisy", "roses", "tulips")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Test traffic goes straight to the loopback server, never through a configured proxy."""
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(cache: Path) -> list[str]:
    """What the download left in ``<cache>/flowers`` (no temporary file may remain)."""
    folder = cache / "flowers"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def png_bytes(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, "PNG")
    return buf.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def make_flowers_tgz(path: Path, classes: tuple[str, ...] = CLASSES, extra=None) -> Path:
    """A tiny flower_photos.tgz: flower_photos/<class>/<n>.png (+ LICENSE.txt); ``extra(tar)`` adds more."""
    with tarfile.open(path, "w:gz") as tar:
        add_dir(tar, "flower_photos")
        add_bytes(tar, "flower_photos/LICENSE.txt", b"CC-BY\n")
        for i, cls in enumerate(classes):
            add_dir(tar, f"flower_photos/{cls}")
            for n in range(2):
                add_bytes(tar, f"flower_photos/{cls}/{n}.png", png_bytes((40 * i, 10 * n, 200)))
        if extra is not None:
            extra(tar)
    return path


# --------------------------------------------------------------------------------------------- server


class Server:
    """A loopback HTTP server serving ``files`` (path -> bytes) and counting requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()  # paths whose body is cut short (Content-Length stays the full size)
        self.no_length: set[str] = set()  # paths served without a Content-Length header
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                if self.path not in outer.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in outer.truncate else body)
                self.close_connection = True

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def tgz(tmp_path: Path) -> bytes:
    return make_flowers_tgz(tmp_path / "src.tgz").read_bytes()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- download


def test_constants():
    assert FLOWERS_URL.endswith("/flower_photos.tgz")
    assert FLOWERS_SIZE == 228_813_984
    assert FLOWERS_SHA256 == "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
    assert FLOWER_CLASSES == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    defaults = inspect.signature(download_flowers).parameters
    assert defaults["known_hash"].default == FLOWERS_SHA256
    assert defaults["expected_size"].default == FLOWERS_SIZE


def test_download_extracts_imagefolder_and_reports_progress(tmp_path, server, tgz):
    server.files["/flower_photos.tgz"] = tgz
    calls = []
    cache = tmp_path / "cache"
    root = download_flowers(
        cache,
        on_progress=lambda d, t, m: calls.append((d, t, m)),
        url=server.url("/flower_photos.tgz"),
        expected_size=len(tgz),
        expected_classes=CLASSES,
        known_hash=sha256(tgz),
        chunk_size=64,
    )
    assert root == cache / "flowers" / "flower_photos"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(CLASSES)
    assert all(len(list((root / c).glob("*.png"))) == 2 for c in CLASSES)
    assert (root / "LICENSE.txt").is_file()
    assert is_complete(root)
    assert (cache / "flowers" / "flower_photos.tgz").read_bytes() == tgz
    assert leftovers(cache) == ["flower_photos", "flower_photos.tgz"]  # no temporary file nor folder

    dl = [(d, t) for d, t, m in calls if m == "downloading flower_photos.tgz"]
    assert len(dl) > 2
    assert dl[0] == (0, len(tgz))
    assert [d for d, _ in dl] == sorted(d for d, _ in dl)
    assert all(t == len(tgz) for _, t in dl)
    assert dl[-1] == (len(tgz), len(tgz))
    assert len(dl) >= len(tgz) // 64  # one report per chunk, counting real bytes

    ex = [(d, t) for d, t, m in calls if m == "extracting flower_photos.tgz"]
    assert ex and ex[-1][0] == ex[-1][1] > 0
    assert [d for d, _ in ex] == sorted(d for d, _ in ex)


def test_download_without_content_length_reports_expected_size(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    server.no_length.add("/f.tgz")
    calls = []
    download_flowers(
        tmp_path,
        on_progress=lambda d, t, m: calls.append((d, t)) if m.startswith("downloading") else None,
        url=server.url("/f.tgz"),
        expected_size=len(tgz),
        expected_classes=None,
        known_hash=sha256(tgz),
        chunk_size=256,
    )
    assert calls[0] == (0, len(tgz)) and calls[-1] == (len(tgz), len(tgz))
    assert all(t == len(tgz) for _, t in calls)


def test_never_downloads_twice(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    kwargs = dict(url=server.url("/f.tgz"), expected_size=len(tgz), expected_classes=None, known_hash=sha256(tgz))
    root = download_flowers(tmp_path, **kwargs)
    assert len(server.requests) == 1

    calls = []
    assert download_flowers(tmp_path, on_progress=lambda *a: calls.append(a), **kwargs) == root
    assert len(server.requests) == 1
    assert calls == []  # returned at once

    # the extraction is gone but the .tgz (right hash) is still there: extract again, without network
    shutil.rmtree(root)
    assert download_flowers(tmp_path, **kwargs) == root
    assert is_complete(root)
    assert len(server.requests) == 1


def test_existing_tgz_with_right_hash_needs_no_network(tmp_path, tgz):
    (tmp_path / "flowers").mkdir()
    (tmp_path / "flowers" / "flower_photos.tgz").write_bytes(tgz)  # e.g. put there by hand
    url = f"http://127.0.0.1:{closed_port()}/x.tgz"
    root = download_flowers(tmp_path, url=url, expected_size=len(tgz), expected_classes=None, known_hash=sha256(tgz))
    assert is_complete(root)


@pytest.mark.parametrize("wrong", ["other bytes", "other size"])
def test_existing_tgz_with_wrong_hash_is_downloaded_again(tmp_path, server, tgz, wrong):
    server.files["/f.tgz"] = tgz
    (tmp_path / "flowers").mkdir()
    stale = bytes(len(tgz)) if wrong == "other bytes" else tgz[:100]
    (tmp_path / "flowers" / "flower_photos.tgz").write_bytes(stale)
    download_flowers(
        tmp_path, url=server.url("/f.tgz"), expected_size=len(tgz), expected_classes=None, known_hash=sha256(tgz)
    )
    assert len(server.requests) == 1
    assert (tmp_path / "flowers" / "flower_photos.tgz").read_bytes() == tgz
    assert leftovers(tmp_path) == ["flower_photos", "flower_photos.tgz"]


def test_wrong_hash_is_deleted_and_downloaded_again(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    kwargs = dict(url=server.url("/f.tgz"), expected_size=len(tgz), expected_classes=None)
    with pytest.raises(DownloadError) as info:
        download_flowers(tmp_path, known_hash="0" * 64, **kwargs)
    msg = str(info.value)
    assert "SHA-256" in msg and "0" * 64 not in msg  # says what happened, without the hash itself
    assert "deleted" in msg and "try again" in msg
    assert "Traceback" not in msg
    assert leftovers(tmp_path) == []  # nothing under the final name, no temporary file
    assert len(server.requests) == 1

    root = download_flowers(tmp_path, known_hash=sha256(tgz), **kwargs)  # the next call downloads anew
    assert len(server.requests) == 2
    assert is_complete(root)


def test_incomplete_extraction_is_redone(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    root = tmp_path / "flowers" / "flower_photos"
    (root / "daisy").mkdir(parents=True)  # looks like an interrupted extraction: no marker
    download_flowers(
        tmp_path, url=server.url("/f.tgz"), expected_size=len(tgz), expected_classes=CLASSES, known_hash=sha256(tgz)
    )
    assert is_complete(root)
    assert len(list((root / "daisy").glob("*.png"))) == 2


def test_wrong_expected_size_leaves_nothing(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    calls = []
    with pytest.raises(DownloadError, match=f"offers {len(tgz):,} bytes.*not downloading"):
        download_flowers(
            tmp_path,
            on_progress=lambda *a: calls.append(a),
            url=server.url("/f.tgz"),
            expected_size=len(tgz) + 1,
            expected_classes=None,
            known_hash=None,
        )
    assert leftovers(tmp_path) == []
    assert calls == []  # refused before reading any of it


def test_wrong_size_without_content_length_leaves_nothing(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    server.no_length.add("/f.tgz")
    with pytest.raises(DownloadError, match=f"incomplete or wrong: got {len(tgz):,} bytes, expected"):
        download_flowers(
            tmp_path, url=server.url("/f.tgz"), expected_size=len(tgz) + 1, expected_classes=None, known_hash=None
        )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("hashed", [False, True], ids=["no-hash", "hash"])
def test_truncated_download_leaves_nothing(tmp_path, server, tgz, hashed):
    server.files["/f.tgz"] = tgz
    server.truncate.add("/f.tgz")
    announced = f"incomplete or wrong: got {len(tgz) // 2:,} bytes, the server announced {len(tgz):,}"
    with pytest.raises(DownloadError, match=announced + r"\. The partial file was deleted; please try again"):
        download_flowers(
            tmp_path,
            url=server.url("/f.tgz"),
            expected_size=None,
            expected_classes=None,
            known_hash=sha256(tgz) if hashed else None,
        )
    assert leftovers(tmp_path) == []


def test_unreachable_url_gives_helpful_message(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/x.tgz"
    with pytest.raises(DownloadError) as info:
        download_flowers(tmp_path, url=url, expected_size=None, timeout=2)
    msg = str(info.value)
    assert "Could not download" in msg
    assert "connection was refused" in msg
    assert url in msg
    assert "internet connection" in msg
    assert str(tmp_path / "flowers" / "flower_photos.tgz") in msg
    assert "--data sample" in msg
    assert "Traceback" not in msg
    assert leftovers(tmp_path) == []


def test_unknown_host_gives_helpful_message(tmp_path, monkeypatch):
    real = socket.getaddrinfo

    def no_dns(host, *args, **kwargs):
        if host == "flowers.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DownloadError, match=r"host name could not be resolved.*internet connection.*--data sample"):
        download_flowers(tmp_path, url="http://flowers.invalid/x.tgz", expected_size=None, timeout=2)
    assert leftovers(tmp_path) == []


def test_http_error_gives_helpful_message(tmp_path, server):
    with pytest.raises(DownloadError, match=r"HTTP 404 Not Found.*internet connection"):
        download_flowers(tmp_path, url=server.url("/missing.tgz"), expected_size=None)
    assert leftovers(tmp_path) == []


def test_timeout_gives_helpful_message(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.tgz"
        with pytest.raises(DownloadError, match=r"no answer within 0.3 s \(timed out\)"):
            download_flowers(tmp_path, url=url, expected_size=None, timeout=0.3)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError, OSError])
def test_progress_callback_interrupt_leaves_nothing(tmp_path, server, tgz, error):
    server.files["/f.tgz"] = tgz

    def stop(done, total, message):
        if done > 0:
            raise error("stopped")  # e.g. a Streamlit rerun: passes through as it is

    with pytest.raises(error, match="stopped"):
        download_flowers(tmp_path, stop, url=server.url("/f.tgz"), expected_size=None, chunk_size=64)
    assert leftovers(tmp_path) == []


def test_stale_temporary_downloads_are_removed(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    flowers = tmp_path / "flowers"
    flowers.mkdir()
    old, fresh, legacy = flowers / "tmpkilled", flowers / "tmplive", flowers / "flower_photos.tgz.part"
    for path in (old, fresh, legacy):
        path.write_bytes(b"partial")
    for path in (old, legacy):
        os.utime(path, (0, 0))
    download_flowers(tmp_path, url=server.url("/f.tgz"), expected_size=None, expected_classes=None, known_hash=None)
    assert not old.exists() and not legacy.exists()  # left by a killed process
    assert fresh.exists()  # may be another process's download in progress


def test_corrupt_archive_is_deleted(tmp_path, server):
    server.files["/f.tgz"] = b"this is not a gzip file at all" * 10
    with pytest.raises(DownloadError, match="not a valid .tgz"):
        download_flowers(tmp_path, url=server.url("/f.tgz"), expected_size=None, expected_classes=None, known_hash=None)
    assert not (tmp_path / "flowers" / "flower_photos.tgz").exists()
    assert not (tmp_path / "flowers" / "flower_photos").exists()


def test_missing_classes_rejected(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    with pytest.raises(DownloadError, match="dandelion"):  # default: the 5 flower classes
        download_flowers(tmp_path, url=server.url("/f.tgz"), expected_size=None, known_hash=sha256(tgz))
    assert not is_complete(tmp_path / "flowers" / "flower_photos")


def test_download_failure_messages_name_the_cause():
    import requests
    import urllib3

    reason = core.data.download._reason
    refused = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    wrapped = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", refused))
    assert reason(wrapped, 30) == "the connection was refused"
    assert reason(requests.exceptions.ReadTimeout("Read timed out."), 5) == "no answer within 5 s (timed out)"
    broken = requests.exceptions.ChunkedEncodingError(
        urllib3.exceptions.ProtocolError("Connection broken", urllib3.exceptions.IncompleteRead(5, 10))
    )
    assert reason(broken, 30) == "the connection closed before the whole file arrived"
    assert reason(requests.exceptions.ConnectionError("odd"), 30) == "odd"


def _symlink(tar: tarfile.TarFile, target: str) -> None:
    info = tarfile.TarInfo("flower_photos/daisy/link.png")
    info.type = tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


def _hardlink(tar: tarfile.TarFile, target: str) -> None:
    info = tarfile.TarInfo("flower_photos/daisy/hard.png")
    info.type = tarfile.LNKTYPE
    info.linkname = target
    tar.addfile(info)


def _device(tar: tarfile.TarFile, target: str) -> None:
    info = tarfile.TarInfo("flower_photos/daisy/dev")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    tar.addfile(info)


@pytest.mark.parametrize(
    "evil",
    [
        lambda tar, outside: add_bytes(tar, "../evil.txt", b"pwned"),
        lambda tar, outside: add_bytes(tar, "flower_photos/../../evil.txt", b"pwned"),
        lambda tar, outside: add_bytes(tar, str(outside / "evil.txt"), b"pwned"),
        lambda tar, outside: _symlink(tar, str(outside / "evil.txt")),
        lambda tar, outside: _symlink(tar, "../../../evil.txt"),
        lambda tar, outside: _hardlink(tar, str(outside / "evil.txt")),
        lambda tar, outside: _device(tar, ""),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-abs", "symlink-rel", "hardlink", "device"],
)
def test_malicious_tar_is_refused(tmp_path, evil):
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = tmp_path / "work" / "cache"
    flowers = cache / "flowers"
    flowers.mkdir(parents=True)
    make_flowers_tgz(flowers / "flower_photos.tgz", extra=lambda tar: evil(tar, outside))
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(cache)}

    no_server = f"http://127.0.0.1:{closed_port()}/x.tgz"  # the .tgz is there: no network
    with pytest.raises(DownloadError, match="unsafe entry"):
        download_flowers(cache, url=no_server, expected_size=None, expected_classes=None, known_hash=None)

    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(cache)}
    assert after == before  # nothing written outside the cache dir
    assert not (flowers / "flower_photos").exists()  # nothing extracted at all
    assert not list(flowers.glob(".extract-*"))
    assert not (flowers / "flower_photos.tgz").exists()  # bad archive removed


def test_module_needs_neither_torch_nor_streamlit():
    code = "import sys, core.data.download; print('torch' in sys.modules, 'streamlit' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]
    )
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------- zip


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_zip_nested_single_top_folder(tmp_path):
    png = png_bytes((1, 2, 3))
    z = make_zip(
        tmp_path / "up.zip",
        {
            "myflowers/daisy/a.png": png,
            "myflowers/daisy/b.png": png,
            "myflowers/roses/c.png": png,
            "myflowers/.DS_Store": b"x",
            "__MACOSX/myflowers/daisy/._a.png": b"junk",
        },
    )
    calls = []
    root = extract_zip(z, tmp_path / "cache", on_progress=lambda *a: calls.append(a))
    assert root.name == "myflowers"
    assert root.parent.parent == tmp_path / "cache" / "zips"
    assert len(root.parent.name) == 16
    assert sorted(p.name for p in root.iterdir()) == ["daisy", "roses"]
    assert not (root.parent / "__MACOSX").exists()
    assert is_complete(root.parent)
    assert calls and calls[-1][0] == calls[-1][1] and calls[-1][2] == "extracting up.zip"


def test_zip_flat_layout_and_reuse(tmp_path):
    png = png_bytes((1, 2, 3))
    z = make_zip(tmp_path / "flat.zip", {"daisy/a.png": png, "roses/b.png": png, "tulips/c.png": png})
    cache = tmp_path / "cache"
    root = extract_zip(z, cache)
    assert (root / MARKER).is_file()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["daisy", "roses", "tulips"]

    sentinel = root / "daisy" / "sentinel.txt"
    sentinel.write_text("still here")
    calls = []
    assert extract_zip(z, cache, on_progress=lambda *a: calls.append(a)) == root
    assert sentinel.exists() and calls == []  # reused, not extracted again
    assert len(list((cache / "zips").iterdir())) == 1


@pytest.mark.parametrize("name", ["../evil.png", "daisy/../../evil.png", "/tmp/evil-transferlab.png"])
def test_zip_unsafe_paths_refused(tmp_path, name):
    z = make_zip(tmp_path / "bad.zip", {"daisy/a.png": b"x", name: b"pwned"})
    cache = tmp_path / "work" / "cache"
    with pytest.raises(DataError, match="unsafe entry"):
        extract_zip(z, cache)
    assert not (tmp_path / "work" / "evil.png").exists()
    assert not (tmp_path / "evil.png").exists()
    assert not list((cache / "zips").iterdir())  # no temp folder nor partial extraction left


def test_zip_symlink_refused(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("daisy/a.png", b"x")
        info = zipfile.ZipInfo("daisy/link.png")
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="link"):
        extract_zip(z, tmp_path / "cache")


def test_zip_bomb_limits(tmp_path):
    z = make_zip(tmp_path / "big.zip", {"daisy/a.bin": b"\0" * 10_000, "roses/b.bin": b"\0" * 10_000})
    with pytest.raises(DataError, match="allowed"):
        extract_zip(z, tmp_path / "cache", max_bytes=15_000)
    with pytest.raises(DataError, match="entries"):
        extract_zip(z, tmp_path / "cache", max_members=1)


def test_not_a_zip(tmp_path):
    f = tmp_path / "photo.zip"
    f.write_bytes(b"definitely not a zip")
    with pytest.raises(DataError, match=r"is not a valid \.zip file"):
        extract_zip(f, tmp_path / "cache")


def test_missing_zip(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        extract_zip(tmp_path / "nope.zip", tmp_path / "cache")


def test_a_second_session_waits_for_the_first_download_showing_its_progress(tmp_path, server, tgz):
    import fcntl

    server.files["/f.tgz"] = tgz
    kwargs = dict(url=server.url("/f.tgz"), expected_size=len(tgz), expected_classes=None, known_hash=sha256(tgz))
    flowers = tmp_path / "flowers"
    flowers.mkdir()
    (flowers / "tmpdownloading").write_bytes(b"x" * 1000)  # the other session's download so far
    waiting, reports, roots = threading.Event(), [], []

    def on_progress(done, total, message):
        reports.append((done, total, message))
        if "another session is downloading" in message:
            waiting.set()

    with open(tmp_path / ".flowers.lock", "w") as lock:  # the other session holds the lock
        fcntl.flock(lock, fcntl.LOCK_EX)

        def session():
            roots.append(download_flowers(tmp_path, on_progress=on_progress, **kwargs))

        sessions = [threading.Thread(target=session) for _ in range(2)]
        for s in sessions:
            s.start()
        assert waiting.wait(30)
        assert server.requests == []  # nobody downloads while the lock is held
        assert (1000, len(tgz), "another session is downloading flower_photos.tgz; waiting for it") in reports
        fcntl.flock(lock, fcntl.LOCK_UN)
    for s in sessions:
        s.join(60)
    assert len(roots) == 2 and roots[0] == roots[1] and is_complete(roots[0])
    assert server.requests == ["/f.tgz"]  # one download for both sessions


def test_a_killed_extraction_is_cleaned_up(tmp_path, server, tgz):
    server.files["/f.tgz"] = tgz
    leftover = tmp_path / "flowers" / ".extract-killed"
    (leftover / "flower_photos" / "daisy").mkdir(parents=True)
    download_flowers(tmp_path, url=server.url("/f.tgz"), expected_size=len(tgz), expected_classes=None,
                     known_hash=sha256(tgz))  # fmt: skip
    assert not leftover.exists()


def test_a_killed_zip_extraction_is_cleaned_up_but_a_live_one_is_not(tmp_path):
    png = png_bytes((1, 2, 3))
    z = make_zip(tmp_path / "flat.zip", {"daisy/a.png": png, "roses/b.png": png})
    zips = tmp_path / "cache" / "zips"
    killed, live = zips / ".extract-killed", zips / ".extract-live"
    for folder in (killed, live):
        (folder / "daisy").mkdir(parents=True)
    os.utime(killed, (0, 0))
    extract_zip(z, tmp_path / "cache")
    assert not killed.exists() and live.exists()
