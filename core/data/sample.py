"""The built-in offline sample dataset: the five flower classes drawn by the project itself, cached on disk.

When no real photos are available (no network, first run, the tests) the app trains on this instead of
the real flowers dataset. It has the same five class names and the same ImageFolder layout
(``root/<class>/<class>_0000.jpg``); the pictures come from :mod:`core.data.drawing`, in a few seconds.

Each image gets its own ``numpy.random.default_rng([seed, class_index, i])``, so the same
``(per_class, size, seed)`` always gives byte-identical files, whatever order they are made in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from core.data.drawing import MIN_SIZE, render_flower
from core.data.flowers import FLOWER_CLASSES
from core.errors import ConfigError, StorageError
from core.files import make_dirs, storage_error
from core.progress import ProgressFn, no_progress

SAMPLE_VERSION = 1
JPEG_QUALITY = 92
# Said wherever the sample is chosen or shown (the sidebar, Home): it is not what the lesson is about.
SAMPLE_CAVEAT = (
    "Drawn flowers generated offline: results on it say little about real photos; download the real flowers "
    "for the lesson."
)


def _check(per_class: int, size: int, seed: int) -> None:
    if per_class < 1:
        raise ConfigError(f"The sample dataset needs at least 1 image per class (got {per_class}).")
    if size < MIN_SIZE:
        raise ConfigError(f"Sample image size must be at least {MIN_SIZE} px (got {size}).")
    if seed < 0:
        raise ConfigError(f"The sample seed must be >= 0 (got {seed}).")


def generate_sample(
    root: Path,
    per_class: int = 60,
    size: int = 128,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> Path:
    """Write ``root/<class>/<class>_<i:04d>.jpg`` for every sample class and return ``root``.

    Deterministic: image ``i`` of class ``c`` is drawn from ``default_rng([seed, index(c), i])``.
    Existing files with the same names are overwritten.
    """
    _check(per_class, size, seed)
    root = Path(root)
    total = per_class * len(FLOWER_CLASSES)
    on_progress(0, total, "drawing sample flowers")
    done = 0
    for ci, cls in enumerate(FLOWER_CLASSES):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, ci, i])
            img = render_flower(cls, rng, size)
            img.save(folder / f"{cls}_{i:04d}.jpg", format="JPEG", quality=JPEG_QUALITY)
            done += 1
            on_progress(done, total, f"drawing sample flowers ({cls})")
    return root


def sample_dir_name(per_class: int = 60, size: int = 128, seed: int = 0) -> str:
    return f"sample-v{SAMPLE_VERSION}-{per_class}x{size}-s{seed}"


def _is_complete(path: Path, per_class: int) -> bool:
    try:
        for cls in FLOWER_CLASSES:
            if sum(1 for p in (path / cls).iterdir() if p.suffix == ".jpg") != per_class:
                return False
    except OSError:
        return False
    return True


def ensure_sample(
    cache_dir: Path,
    per_class: int = 60,
    size: int = 128,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
) -> Path:
    """The sample dataset under ``cache_dir``, generated only if it is not there yet.

    Returns ``cache_dir / "sample-v1-{per_class}x{size}-s{seed}"``. It is generated into a temporary
    sibling folder and renamed into place when finished, so a half-written dataset is never seen under
    the final name (an interrupted run leaves only a ``.tmp`` folder) and concurrent callers are safe.
    """
    _check(per_class, size, seed)
    cache_dir = Path(cache_dir)
    target = cache_dir / sample_dir_name(per_class, size, seed)
    total = per_class * len(FLOWER_CLASSES)
    if _is_complete(target, per_class):
        on_progress(total, total, "sample dataset ready")
        return target
    make_dirs(cache_dir)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache_dir))
    except OSError as e:
        raise storage_error(e, cache_dir) from e
    try:
        generate_sample(tmp, per_class, size, seed, on_progress)
        if target.exists() and not _is_complete(target, per_class):
            shutil.rmtree(target, ignore_errors=True)  # a damaged copy of our own cache entry
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target, per_class):  # not "someone else finished first"
                raise
    except StorageError:
        raise
    except OSError as e:  # a full disk while drawing, most likely
        raise storage_error(e, target) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    on_progress(total, total, "sample dataset ready")
    return target
