"""Flowers download benchmark: the old hand-written urllib fetch against the pooch path that replaced it.

Serves a file of the flowers archive's size (228,813,984 random bytes by default) from a loopback
``ThreadingHTTPServer`` (``sendfile``, so the server costs little) and times, round-robin, ``--runs`` times each:

* ``urllib`` — the old ``_fetch`` (copied below as it was: 1 MiB reads into a ``.part`` file, size checks, rename);
* ``urllib + sha256`` — the same, then hashing the file with ``hashlib`` (what the old path would cost with a hash);
* ``pooch`` — ``core.data.download._fetch`` as ``download_flowers`` runs it: pooch's ``HTTPDownloader`` with the
  progress adapter, into a temporary file, SHA-256 checked by pooch, moved into place;
* ``pooch download only`` — pooch's ``HTTPDownloader`` with the progress adapter alone (no hash, no move);
* ``sha256 only`` — ``pooch.file_hash`` of the downloaded file (warm page cache, as right after a download).

Every path reports progress to the same counting callback. Prints the CPU ISA, a markdown table of medians,
and each path's ratio against ``urllib``. Network is loopback only; nothing is fetched from the internet.

Run: ``python benchmarks/bench_download.py [--runs 3] [--size BYTES]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pooch
import requests

from core.data import download
from core.data.flowers import FLOWERS_SIZE
from core.errors import DownloadError
from core.models.device import cpu_isa
from core.progress import ProgressFn

CHUNK = 1 << 20


# ------------------------------------------------------------------------------------ the old fetch (baseline)


def old_fetch(
    url: str, dest: Path, expected_size: Optional[int], timeout: float, on_progress: ProgressFn, chunk_size: int
) -> None:
    """``core.data.download._fetch`` before pooch (error wording trimmed; the data path is unchanged)."""
    part = dest.with_name(dest.name + ".part")
    message = f"downloading {dest.name}"
    out = open(part, "wb")
    try:
        with out, urllib.request.urlopen(url, timeout=timeout) as response:
            value = response.headers.get("Content-Length")
            length = int(value) if value is not None else None
            if length is not None and expected_size is not None and length != expected_size:
                raise DownloadError(f"size mismatch: {length} != {expected_size}")
            total = length if length is not None else expected_size
            done = 0
            on_progress(0, total, message)
            while chunk := response.read(chunk_size):
                out.write(chunk)
                done += len(chunk)
                on_progress(done, total, message)
        for size in (length, expected_size):
            if size is not None and done != size:
                raise DownloadError(f"incomplete: {done} != {size}")
        os.replace(part, dest)
    except BaseException:  # the old code wrapped network errors in DownloadError here; the cleanup is the same
        part.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------ server


def serve(path: Path) -> tuple[ThreadingHTTPServer, str]:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            with open(path, "rb") as f:
                self.connection.sendfile(f)
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/{path.name}"


# ------------------------------------------------------------------------------------------------ paths


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.last: tuple[int, Optional[int]] = (0, None)

    def __call__(self, done: int, total: Optional[int], message: str) -> None:
        self.calls += 1
        self.last = (done, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=FLOWERS_SIZE, help="bytes served (default: the real archive's)")
    args = parser.parse_args()

    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "*"  # loopback only, never through a proxy
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        source = work / "flower_photos.tgz"
        with open(source, "wb") as f:
            for start in range(0, args.size, 16 * CHUNK):
                f.write(os.urandom(min(16 * CHUNK, args.size - start)))
        known = pooch.file_hash(source)
        httpd, url = serve(source)
        out = work / "out"
        out.mkdir()
        dest = out / "flower_photos.tgz"

        def run_old(progress: Counter) -> None:
            old_fetch(url, dest, args.size, 30, progress, CHUNK)

        def run_old_hash(progress: Counter) -> None:
            old_fetch(url, dest, args.size, 30, progress, CHUNK)
            assert pooch.file_hash(dest) == known

        def run_pooch(progress: Counter) -> None:
            download._fetch(url, dest, known, args.size, 30, progress, CHUNK)

        def run_pooch_download(progress: Counter) -> None:
            adapter = download._PoochProgress(progress, "downloading flower_photos.tgz", url, args.size)
            adapter.file = str(dest)
            pooch.HTTPDownloader(progressbar=adapter, chunk_size=CHUNK, timeout=30)(url, str(dest), None)
            adapter.check_size()

        def run_hash(progress: Counter) -> None:
            if not dest.exists():
                shutil.copyfile(source, dest)
            assert pooch.file_hash(str(dest)) == known

        paths: dict[str, Callable[[Counter], None]] = {
            "urllib (old _fetch)": run_old,
            "urllib + sha256 (hashlib)": run_old_hash,
            "pooch (new _fetch: download + sha256 + move)": run_pooch,
            "pooch download only (HTTPDownloader + adapter)": run_pooch_download,
            "sha256 only (pooch.file_hash, warm cache)": run_hash,
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.runs):
            for name, fn in paths.items():
                if name.startswith("sha256 only"):
                    pass  # hashes the file the previous path left
                else:
                    dest.unlink(missing_ok=True)
                progress = Counter()
                t0 = time.perf_counter()
                fn(progress)
                times[name].append(time.perf_counter() - t0)
                assert dest.stat().st_size == args.size
                if progress.calls:
                    assert progress.last == (args.size, args.size), progress.last
        httpd.shutdown()
        httpd.server_close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"CPU ISA {cpu_isa()}, {os.cpu_count()} cores, python {platform.python_version()}, pooch {pooch.__version__}, "
        f"requests {requests.__version__}; {args.size:,} bytes over loopback, {args.runs} runs each (round-robin)\n"
    )
    base = statistics.median(times["urllib (old _fetch)"])
    print("| path | median s | min s | MB/s | vs urllib |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {min(ts):.3f} | {args.size / med / 1e6:,.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
