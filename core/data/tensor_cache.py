"""Decode and resize images **once**, keep them as uint8 tensors in memory and on disk.

Epochs then index a ``(N, 3, S, S)`` uint8 tensor instead of re-decoding JPEGs. The on-disk cache is keyed
by a fingerprint of the exact files (path, size, mtime) and the image size, so any change to the source
invalidates it. Unreadable or non-image files are skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from core.data.decode import decode_image, decode_parallel
from core.files import atomic_write
from core.lru import LockedLRU
from core.progress import ProgressFn, no_progress
from core.settings import usable_cpus

CACHE_VERSION = 1


@dataclass
class DecodedImages:
    """Images of one dataset at one size. ``files[i]`` (relative to ``root``) has label ``labels[i]``."""

    root: Path
    classes: Tuple[str, ...]
    files: Tuple[str, ...]
    labels: torch.Tensor  # int64 (N,)
    images: torch.Tensor  # uint8 (N, 3, S, S)
    skipped: Tuple[str, ...]  # files that could not be decoded
    key: str = ""  # identifies these exact files at this size (the cache key)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.files)


def file_stats(root: Path, files: Sequence[str]) -> List[Tuple[str, int, int]]:
    """``(relative path, size, mtime_ns)`` of each of ``files``."""
    out = []
    for rel in files:
        st = (Path(root) / rel).stat()
        out.append((rel, st.st_size, st.st_mtime_ns))
    return out


def stats_fingerprint(root: Path, stats: Sequence[Tuple[str, int, int]]) -> str:
    """The fingerprint of :func:`file_stats` output (see :func:`files_fingerprint`)."""
    h = hashlib.sha1(str(Path(root).resolve()).encode())
    for rel, size, mtime_ns in stats:
        h.update(f"{rel}\0{size}\0{mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def files_fingerprint(root: Path, files: Sequence[str]) -> str:
    """Changes when any of ``files`` is added, removed, renamed, resized or touched."""
    return stats_fingerprint(root, file_stats(root, files))


def _decode_many(
    root: Path, files: Sequence[str], size: int, on_progress: ProgressFn, workers: int
) -> Tuple[np.ndarray, list]:
    out = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    ok = decode_parallel(
        [Path(root) / f for f in files], lambda p: decode_image(p, size), out, on_progress, workers=workers
    )
    return out, ok


_memory: LockedLRU[DecodedImages] = LockedLRU(maxsize=3)


def cache_key(root: Path, files: Sequence[str], size: int) -> str:
    return f"v{CACHE_VERSION}-{files_fingerprint(root, files)}-{size}"


def is_cached(root: Path, files: Sequence[str], size: int, cache_dir: Optional[Path]) -> bool:
    """Whether :func:`load_images` would find these images decoded, in memory or on disk."""
    key = cache_key(Path(root), files, size)
    if key in _memory:
        return True
    return cache_dir is not None and (Path(cache_dir) / "tensors" / f"{key}.pt").is_file()


def load_images(
    root: Path,
    classes: Sequence[str],
    files: Sequence[str],
    labels: Sequence[int],
    size: int,
    cache_dir: Optional[Path] = None,
    on_progress: ProgressFn = no_progress,
    workers: Optional[int] = None,
) -> DecodedImages:
    """Decoded uint8 tensors for ``files`` at ``size`` px: from memory, else disk cache, else decode.

    ``cache_dir=None`` disables the disk cache (the in-memory cache still applies).
    """
    root = Path(root)
    key = cache_key(root, files, size)
    found = _memory.get(key)
    if found is not None:
        return found
    path = Path(cache_dir) / "tensors" / f"{key}.pt" if cache_dir is not None else None
    decoded = None
    if path is not None and path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            decoded = DecodedImages(
                root=root,
                classes=tuple(blob["classes"]),
                files=tuple(blob["files"]),
                labels=blob["labels"],
                images=blob["images"],
                skipped=tuple(blob["skipped"]),
                key=key,
            )
            on_progress(len(decoded), len(decoded), "loaded decoded images from cache")
        except Exception:  # a corrupt or foreign cache file: decode again and overwrite it
            decoded = None
    if decoded is None:
        arr, ok = _decode_many(root, files, size, on_progress, workers or usable_cpus())
        keep = [i for i, good in enumerate(ok) if good]
        images = torch.from_numpy(arr[keep]).permute(0, 3, 1, 2).contiguous()
        decoded = DecodedImages(
            root=root,
            classes=tuple(classes),
            files=tuple(files[i] for i in keep),
            labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64),
            images=images,
            skipped=tuple(files[i] for i, good in enumerate(ok) if not good),
            key=key,
        )
        if path is not None:
            with atomic_write(path, durable=False) as f:  # a cache: checked on load
                torch.save(
                    {
                        "classes": list(decoded.classes),
                        "files": list(decoded.files),
                        "labels": decoded.labels,
                        "images": decoded.images,
                        "skipped": list(decoded.skipped),
                    },
                    f,
                )
    return _memory.put(key, decoded)


def clear_memory_cache() -> None:
    _memory.clear()
