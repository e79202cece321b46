"""The upload cache: dataset zips uploaded in the app and their extractions, kept within a size budget.

An upload is stored once per content as ``<cache_dir>/uploads/<sha256[:16]>.zip`` (:func:`save_upload`) and
extracted by :func:`core.data.download.extract_zip` into ``<cache_dir>/zips/<the same 16 hex>/``. Together
they count against ``TRANSFERLAB_UPLOAD_BUDGET`` (:attr:`Settings.upload_budget`): :func:`evict_uploads`
removes the least recently used (the zip's mtime, refreshed by :func:`save_upload` and :func:`lease`) until the
total fits. What is in use is never removed:

* the caller names what must stay (``keep``): the upload just made and the sources of queued and running
  runs (:func:`core.runs.store.active_sources`), which may not have started reading yet;
* whatever reads an upload's data holds :func:`lease_source` around it (a training run's data preparation,
  a search index build), a shared ``flock`` on ``uploads/<hash>.lock`` that eviction's exclusive,
  non-blocking one cannot take, from any process. Without flock (not POSIX) leases protect nothing.

An evicted upload is gone for good unless someone uploads it again (the app's sidebar does so by itself
while a browser still holds the file). Search indexes and decoded tensors built from it are not removed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import ContextManager, Iterable, Iterator, Optional, Union

from core.data.download import EXTRACTIONS, MARKER, NAME_CHARS
from core.errors import DataError
from core.files import atomic_write, remove_stale_temporaries, try_lock
from core.settings import ENV_UPLOAD_BUDGET, Settings

UPLOADS = "uploads"  # under the cache dir: the uploaded zips and their lock files


def save_upload(data: bytes, settings: Settings) -> Path:
    """``<cache_dir>/uploads/<sha256[:16]>.zip`` holding ``data``: written atomically, or reused (and marked as
    just used) when already there. A :class:`DataError` when ``data`` alone is over the upload budget."""
    if len(data) > settings.upload_budget:
        raise DataError(
            f"This zip is {len(data) / 1e6:,.0f} MB, more than the {settings.upload_budget / 1e6:,.0f} MB kept for "
            f"uploads ({ENV_UPLOAD_BUDGET}). Upload a smaller dataset, or ask the teacher to raise the budget."
        )
    path = Path(settings.cache_dir) / UPLOADS / f"{hashlib.sha256(data).hexdigest()[:NAME_CHARS]}.zip"
    try:
        if path.stat().st_size == len(data):
            os.utime(path)  # the least recently used go first
            return path
    except OSError:  # not there (or just evicted): write it
        pass
    with atomic_write(path) as f:
        f.write(data)
    return path


def upload_of(source: Union[str, Path], settings: Settings) -> Optional[Path]:
    """The upload zip that ``source`` is or was extracted from (``source``: the zip, its extraction folder or a
    folder inside it, as ``resolve_source`` returns); None for any other source."""
    path = Path(source).expanduser().resolve()
    uploads, extractions = (Path(settings.cache_dir).resolve() / d for d in (UPLOADS, EXTRACTIONS))
    if path.parent == uploads and path.suffix == ".zip":
        return path
    if path.is_relative_to(extractions) and path != extractions:
        return uploads / f"{path.relative_to(extractions).parts[0]}.zip"
    return None


def _lock_path(upload: Path) -> Path:
    return upload.with_suffix(".lock")


def _holds(f, path: Path) -> bool:
    """Whether the open file ``f`` is still the file at ``path`` (eviction deletes lock files it held)."""
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def lease(upload: Path) -> Iterator[Path]:
    """``with lease(upload):`` — :func:`evict_uploads` leaves ``upload`` (and its extraction) alone, in every
    process, until the block ends. Waits only while that very upload is being evicted (it is then gone)."""
    upload, lock_path = Path(upload), _lock_path(Path(upload))
    while True:
        f = try_lock(lock_path, exclusive=False, wait=True)
        if _holds(f, lock_path):
            break
        f.close()  # an eviction removed the lock file while this waited for it: lock the new one
    with f:
        with contextlib.suppress(OSError):
            os.utime(upload)  # used: the least recently used go first
        yield upload


def lease_source(source: Union[str, Path], settings: Settings) -> ContextManager:
    """``with lease_source(source, settings):`` — :func:`lease` when ``source`` (a data source string or the
    folder it resolved to) is an upload; does nothing for any other source. Hold it around resolving and
    reading the data."""
    upload = upload_of(source, settings)
    return lease(upload) if upload is not None else contextlib.nullcontext()


def _size(path: Path) -> int:
    """Bytes in the file or folder tree at ``path`` (0 when absent)."""
    with contextlib.suppress(OSError):
        if path.is_file():
            return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed since it was listed
        return 0.0


def evict_uploads(settings: Settings, keep: Iterable[Union[str, Path]] = ()) -> list[Path]:
    """Remove the least recently used uploads with their extractions until what is left fits in the upload
    budget, never one in ``keep`` (sources, upload zips or extraction folders) nor one leased. Returns the zips
    removed. The budget may stay exceeded when what is over it is kept or leased."""
    uploads = Path(settings.cache_dir).resolve() / UPLOADS
    remove_stale_temporaries([uploads])  # what a save_upload killed mid-write left
    kept = {upload_of(k, settings) for k in keep}
    oldest_first = sorted(uploads.glob("*.zip"), key=_mtime)
    sizes = {z: _size(z) + _size(uploads.parent / EXTRACTIONS / z.stem) for z in oldest_first}
    total, removed = sum(sizes.values()), []
    for upload in oldest_first:
        if total <= settings.upload_budget:
            break
        if upload in kept:
            continue
        lock = try_lock(_lock_path(upload))
        if lock is None:  # leased: in use
            continue
        with lock:
            extraction = uploads.parent / EXTRACTIONS / upload.stem
            (extraction / MARKER).unlink(missing_ok=True)  # first: a half-removed extraction is then redone
            shutil.rmtree(extraction, ignore_errors=True)
            upload.unlink(missing_ok=True)  # last: a zip without its extraction is extracted again when used
            _lock_path(upload).unlink(missing_ok=True)  # leases waiting on it see it gone and lock anew
        total -= sizes[upload]
        removed.append(upload)
    return removed
