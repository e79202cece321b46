"""Where a dataset comes from: a source name or path, resolved to an ImageFolder root on disk.

A *source* is one of ``"sample"`` (the built-in offline sample, generated on first use), ``"flowers"``
(the real 5-class dataset, downloaded on first use), a folder in the ImageFolder layout, or a ``.zip`` of
one (extracted once into the cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

from core.data.download import download_flowers, extract_zip
from core.data.sample import ensure_sample
from core.errors import DataError
from core.progress import ProgressFn, no_progress
from core.settings import Settings


def shared_folders(settings: Settings, local_only: bool) -> Tuple[Path, ...]:
    """The folders a browser may name in the app (a local folder, a folder to evaluate on): those of
    ``TRANSFERLAB_DATA_ROOTS`` when set; else the user's home when the server listens on this machine only
    (``local_only``), nothing when students' browsers can reach it. The command line is not limited."""
    if settings.data_roots is not None:
        return settings.data_roots
    return (Path.home(),) if local_only else ()


def check_allowed(path: str, shared: Sequence[Path], builtin: Sequence[Path] = ()) -> Path:
    """``path`` resolved (``~``, ``..`` and symlinks followed) when it lies inside one of the ``shared``
    folders or of ``builtin`` (the app's own datasets: the cache dir); a :class:`DataError` saying which folders
    are shared otherwise, so a browser reads only what the teacher shared."""
    resolved = Path(path).expanduser().resolve()
    for root in (*shared, *builtin):
        if resolved.is_relative_to(Path(root).expanduser().resolve()):
            return resolved
    names = ", ".join(str(r) for r in shared) or "none besides the built-in datasets"
    raise DataError(
        f"'{path}' is outside the folders this server shares ({names}). The teacher chooses them with "
        f"TRANSFERLAB_DATA_ROOTS (folders separated by '{os.pathsep}') before starting the app."
    )


def resolve_source(
    source: str, settings: Settings, on_progress: ProgressFn = no_progress, *, shown_as: Optional[str] = None
) -> Path:
    """The ImageFolder root for a source name or path, downloading/generating/extracting as needed. ``shown_as``
    is how the user knows a zip (an upload's file name), for messages about it."""
    if source == "sample":
        return ensure_sample(settings.cache_dir, on_progress=on_progress)
    if source == "flowers":
        return download_flowers(settings.cache_dir, on_progress=on_progress)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".zip":
        return extract_zip(path, settings.cache_dir, on_progress=on_progress, shown_as=shown_as)
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
