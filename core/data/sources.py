"""Where a dataset comes from: a source name or path, resolved to an ImageFolder root on disk.

A *source* is one of ``"sample"`` (the built-in offline sample, generated on first use), ``"flowers"``
(the real 5-class dataset, downloaded on first use), a folder in the ImageFolder layout, or a ``.zip`` of
one (extracted once into the cache).
"""

from __future__ import annotations

from pathlib import Path

from core.data.download import download_flowers, extract_zip
from core.data.sample import ensure_sample
from core.errors import DataError
from core.progress import ProgressFn, no_progress
from core.settings import Settings


def resolve_source(source: str, settings: Settings, on_progress: ProgressFn = no_progress) -> Path:
    """The ImageFolder root for a source name or path, downloading/generating/extracting as needed."""
    if source == "sample":
        return ensure_sample(settings.cache_dir, on_progress=on_progress)
    if source == "flowers":
        return download_flowers(settings.cache_dir, on_progress=on_progress)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".zip":
        return extract_zip(path, settings.cache_dir, on_progress=on_progress)
    if not path.exists():
        raise DataError(
            f"Dataset not found: '{source}'. Use 'sample', 'flowers', a folder with one sub-folder "
            f"per class, or a .zip of such a folder."
        )
    if path.is_file():
        raise DataError(
            f"'{source}' is a file, not a dataset. Give a folder with one sub-folder per class, "
            f"or a .zip of such a folder."
        )
    return path
