"""Reading photos: any image file (or upload) to an RGB picture or a uint8 array, safely and in parallel.

Every path that turns a file into pixels goes through here (training, evaluation, search, uploads), so a
photo decodes the same way everywhere: EXIF rotation applied, decompression bombs refused with a clear
reason, damaged files reported as :class:`ImageDecodeError` and skipped by batch decoders, never fatal.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import DataError
from core.progress import ProgressFn, no_progress
from core.settings import usable_cpus

# Refuse absurd images (decompression bombs) with a clear error rather than exhausting memory: by pixel count,
# and by the memory the decode would take (decode_bytes), both known from the header before decoding.
MAX_IMAGE_PIXELS = 100_000_000
MAX_DECODE_BYTES = 512 * 2**20
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


@cache
def bytes_per_pixel(mode: str) -> int:
    """How many bytes one pixel of a PIL ``mode`` takes once decoded ("RGB" 3, "I;16" 2, "RGBA" 4, "F" 4)."""
    return max(1, len(Image.new(mode, (1, 1)).tobytes()))


def decode_bytes(im: Image.Image) -> int:
    """The peak memory of reading ``im`` (opened, not yet decoded) as an upright RGB picture: its pixels as
    stored, decoded and then turned upright (a copy), then converted to RGB."""
    return im.width * im.height * (2 * bytes_per_pixel(im.mode) + 3)


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
                raise ImageDecodeError(
                    f"the image is too large ({im.width}x{im.height} pixels; "
                    f"at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels)"
                )
            if draft_size:
                im.draft("RGB", (draft_size, draft_size))
            if decode_bytes(im) > MAX_DECODE_BYTES:
                raise ImageDecodeError(
                    f"the image is too large to decode ({im.width}x{im.height} pixels in mode {im.mode} would take "
                    f"{decode_bytes(im) / 2**20:,.0f} MB of memory; at most {MAX_DECODE_BYTES // 2**20} MB)"
                )
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


def decode_parallel(
    sources: Sequence,
    decode: Callable[[object], np.ndarray],
    out: np.ndarray,
    on_progress: ProgressFn = no_progress,
    message: str = "decoding images",
    workers: Optional[int] = None,
) -> List[bool]:
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
    with ThreadPoolExecutor(max_workers=workers or usable_cpus()) as pool:
        for _ in pool.map(work, range(len(sources))):
            done += 1
            if done % 32 == 0 or done == len(sources):
                on_progress(done, len(sources), message)
    return ok


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` in [0, 255] to float32 in [0, 1]."""
    return x_uint8.float().div_(255.0)
