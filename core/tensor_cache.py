"""Decode and resize images **once**, keep them as uint8 tensors in memory and on disk.

Epochs then index a ``(N, 3, S, S)`` uint8 tensor instead of re-decoding JPEGs. The on-disk cache is keyed
by a fingerprint of the exact files (path, size, mtime) and the image size, so any change to the source
invalidates it. Unreadable or non-image files are skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import DataError
from core.progress import ProgressFn, no_progress

CACHE_VERSION = 1
# Refuse absurd images (decompression bombs) with a clear error rather than exhausting memory.
MAX_IMAGE_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageDecodeError(ValueError):
    """An image file could not be read; the message says why."""


def unusable_photo(error: ImageDecodeError, name: str = "") -> DataError:
    """The user-facing error for a photo (upload or query) that cannot be read."""
    label = f"'{name}'" if name else "This file"
    return DataError(f"{label} cannot be used as a photo: {error}. Use a JPEG, PNG or WebP image.")


def open_rgb(source, draft_size: Optional[int] = None) -> Image.Image:
    """Read one image (path or file-like) as an RGB PIL image, EXIF rotation applied.

    ``draft_size`` lets JPEGs decode at a reduced scale when they are much larger than needed. Raises
    :class:`ImageDecodeError` with a plain reason for anything that is not a readable image.
    """
    try:
        with warnings.catch_warnings():  # our own size check below gives the clear message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
        with im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise ImageDecodeError(f"the image is too large ({im.width}x{im.height} pixels; "
                                       f"at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels)")
            if draft_size:
                im.draft("RGB", (draft_size, draft_size))
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as e:
        raise ImageDecodeError("it is not in an image format that can be read") from e
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"the image is too large ({e})") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"the image data is damaged or cut short ({e})") from e


def resize_square(im: Image.Image, size: int) -> np.ndarray:
    """uint8 ``(size, size, 3)``: resized to a square, as the course notebook's ``Resize((size, size))``."""
    return np.array(im.resize((size, size), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


def decode_image(source, size: int) -> np.ndarray:
    """Read one image (path or file-like), respect EXIF rotation, return uint8 ``(size, size, 3)`` RGB.

    Raises :class:`ImageDecodeError` for anything that is not a readable image.
    """
    return resize_square(open_rgb(source, draft_size=size * 2), size)


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


def decode_parallel(sources: Sequence, decode: Callable[[object], np.ndarray], out: np.ndarray,
                    on_progress: ProgressFn = no_progress, message: str = "decoding images",
                    workers: Optional[int] = None) -> List[bool]:
    """``out[i] = decode(sources[i])`` on a thread pool (PIL releases the GIL while decoding).

    Returns which sources decoded; a source raising :class:`ImageDecodeError` leaves its row untouched.
    """
    ok = [False] * len(sources)

    def work(i: int) -> None:
        try:
            out[i] = decode(sources[i])
            ok[i] = True
        except ImageDecodeError:
            pass

    done = 0
    with ThreadPoolExecutor(max_workers=workers or max(1, os.cpu_count() or 1)) as pool:
        for _ in pool.map(work, range(len(sources))):
            done += 1
            if done % 32 == 0 or done == len(sources):
                on_progress(done, len(sources), message)
    return ok


def _decode_many(root: Path, files: Sequence[str], size: int, on_progress: ProgressFn,
                 workers: int) -> Tuple[np.ndarray, list]:
    out = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    ok = decode_parallel([Path(root) / f for f in files], lambda p: decode_image(p, size), out, on_progress,
                         workers=workers)
    return out, ok


_memory: "OrderedDict[str, DecodedImages]" = OrderedDict()
_memory_lock = threading.Lock()
_MEMORY_ENTRIES = 3


def cache_key(root: Path, files: Sequence[str], size: int) -> str:
    return f"v{CACHE_VERSION}-{files_fingerprint(root, files)}-{size}"


def is_cached(root: Path, files: Sequence[str], size: int, cache_dir: Optional[Path]) -> bool:
    """Whether :func:`load_images` would find these images decoded, in memory or on disk."""
    key = cache_key(Path(root), files, size)
    with _memory_lock:
        if key in _memory:
            return True
    return cache_dir is not None and (Path(cache_dir) / "tensors" / f"{key}.pt").is_file()


def load_images(root: Path, classes: Sequence[str], files: Sequence[str], labels: Sequence[int], size: int,
                cache_dir: Optional[Path] = None, on_progress: ProgressFn = no_progress,
                workers: Optional[int] = None) -> DecodedImages:
    """Decoded uint8 tensors for ``files`` at ``size`` px: from memory, else disk cache, else decode.

    ``cache_dir=None`` disables the disk cache (the in-memory cache still applies).
    """
    root = Path(root)
    key = cache_key(root, files, size)
    with _memory_lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    path = Path(cache_dir) / "tensors" / f"{key}.pt" if cache_dir is not None else None
    decoded = None
    if path is not None and path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            decoded = DecodedImages(root=root, classes=tuple(blob["classes"]), files=tuple(blob["files"]),
                                    labels=blob["labels"], images=blob["images"], skipped=tuple(blob["skipped"]),
                                    key=key)
            on_progress(len(decoded), len(decoded), "loaded decoded images from cache")
        except Exception:  # a corrupt or foreign cache file: decode again and overwrite it
            decoded = None
    if decoded is None:
        arr, ok = _decode_many(root, files, size, on_progress, workers or max(1, os.cpu_count() or 1))
        keep = [i for i, good in enumerate(ok) if good]
        images = torch.from_numpy(arr[keep]).permute(0, 3, 1, 2).contiguous()
        decoded = DecodedImages(
            root=root, classes=tuple(classes), files=tuple(files[i] for i in keep),
            labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64), images=images,
            skipped=tuple(files[i] for i, good in enumerate(ok) if not good), key=key,
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"classes": list(decoded.classes), "files": list(decoded.files), "labels": decoded.labels,
                        "images": decoded.images, "skipped": list(decoded.skipped)}, tmp)
            os.replace(tmp, path)
    with _memory_lock:
        _memory[key] = decoded
        while len(_memory) > _MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return decoded


def clear_memory_cache() -> None:
    with _memory_lock:
        _memory.clear()
