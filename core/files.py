"""Writing files so that a crash never leaves a half-written one: the one place that does it.

:func:`atomic_path` hands out a temporary path next to the target; when the ``with`` block ends normally
the temporary file is flushed to disk (fsync, unless ``durable=False``) and renamed over the target in one
step, so readers see the old file or the new one, never a torn mix. When the block raises, the temporary
file is deleted. A write that fails (a full disk, a read-only folder, a file where a folder should be)
raises :class:`~core.errors.StorageError` naming the path and what to do. :func:`atomic_write` does the
same with an open file. Every file the project keeps for later (run files, checkpoints, decoded-image
caches, search indexes, exported models, speed measurements) is written through here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Optional

from core.errors import StorageError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks; callers fall back (see try_lock and is_locked)
    fcntl = None

_WHY = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only; choose a folder that can be written",
    errno.EACCES: "this user may not write there; choose a folder that can be written",
    errno.EPERM: "this user may not write there; choose a folder that can be written",
    errno.ENOTDIR: "a file stands where a folder should be; move it or choose another folder",
    errno.EEXIST: "a file stands where a folder should be; move it or choose another folder",
}


def storage_error(e: OSError, path: Path) -> StorageError:
    """The user-facing error for failing to write ``path``: what happened, and what to do about it."""
    why = _WHY.get(e.errno, "check the folder and the disk")
    return StorageError(
        f"Cannot write {path} ({e.strerror or e}): {why}. Where Transfer Lab writes is set by TRANSFERLAB_RUNS_DIR "
        f"(runs) and TRANSFERLAB_CACHE_DIR (downloads, caches, indexes)."
    )


def make_dirs(path: Path) -> Path:
    """``path`` as a folder (made with its parents when missing); a :class:`StorageError` when it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, path) from e
    return path


@contextlib.contextmanager
def atomic_path(path: Path, durable: bool = True) -> Iterator[Path]:
    """``with atomic_path(path) as tmp:`` — write the file ``tmp``; it replaces ``path`` if the block succeeds.

    ``durable=False`` skips the fsync: for caches, which are checked when read and rebuilt when damaged, and
    where syncing hundreds of megabytes would only cost time."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except StorageError:
        raise
    except OSError as e:  # the body's writes, the sync or the rename: a full disk, a read-only folder...
        raise storage_error(e, path) from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """``with atomic_write(path) as f:`` — write ``f``; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path, durable) as tmp, open(tmp, mode) as f:
        yield f


STALE_SECONDS = 3600  # a temporary file untouched for this long was left by a process that died writing it


def remove_stale_files(folder: Path, patterns: Iterable[str], older_than: float = STALE_SECONDS) -> int:
    """Delete the files and folders in ``folder`` matching any glob of ``patterns`` untouched for ``older_than``
    seconds: what a process killed mid-write left (a write in progress is younger). Returns how many were
    removed."""
    now, removed = time.time(), 0
    for pattern in patterns:
        for path in Path(folder).glob(pattern):
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove: leave it
                if now - path.stat().st_mtime > older_than:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed += 1
    return removed


def remove_stale_temporaries(folders: Iterable[Path], older_than: float = STALE_SECONDS) -> int:
    """Delete the temporary files :func:`atomic_path` left in ``folders`` (and one level below) when its
    process was killed mid-write. Returns how many were removed."""
    return sum(remove_stale_files(f, (".*.tmp*", "*/.*.tmp*"), older_than) for f in folders)


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, so that it is strict JSON (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any, durable: bool = True) -> None:
    """``obj`` as indented, strict JSON at ``path`` (NaN and infinities become null), replaced atomically."""
    with atomic_write(path, "w", durable) as f:
        json.dump(strict_json(obj), f, indent=1, allow_nan=False)


# ------------------------------------------------------------------------------------------- advisory locks
# An flock is held by an open file and released by the operating system when its process dies, however it
# dies: what a run's liveness, the training worker and the upload leases rely on. Separate open() calls
# conflict even within one process.


def try_lock(path: Path, exclusive: bool = True, wait: bool = False) -> Optional[IO]:
    """The open file holding an flock on ``path`` (created when missing); close it to release the lock. None
    when another holder has it and ``wait`` is False. Where there are no flocks (not POSIX), an unlocked open
    file: the caller goes on unprotected, as it would have without locks."""
    make_dirs(Path(path).parent)
    try:
        f = open(path, "a")
    except OSError as e:
        raise storage_error(e, Path(path)) from e
    if fcntl is None:
        return f
    try:
        fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        f.close()
        return None
    return f


def is_locked(path: Path) -> Optional[bool]:
    """Whether some open file holds an exclusive flock on ``path`` (False when it does not exist); None where
    that cannot be known (not POSIX, or ``path`` cannot be opened)."""
    if fcntl is None:
        return None
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        return False
    except OSError:
        return None
