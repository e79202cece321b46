"""Scan a folder in the torchvision ``ImageFolder`` layout: one sub-folder per class.

Only files with an image extension are listed; hidden files and folders are ignored. Whether each file
really decodes is found out later, when images are decoded once (see :mod:`core.data.tensor_cache`), where
unreadable files are skipped and counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PHOTO_TYPES = [ext[1:] for ext in IMAGE_EXTENSIONS]  # for upload widgets


@dataclass(frozen=True)
class ImageFolderListing:
    """The files of an ImageFolder-layout dataset: relative paths with integer labels."""

    root: Path
    classes: Tuple[str, ...]
    files: Tuple[str, ...]  # paths relative to root, posix style
    labels: Tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)

    def examples(self, per_class: int, seed: int = 0) -> dict:
        """A seeded choice of up to ``per_class`` absolute paths for each class (for thumbnails)."""
        rng = random.Random(seed)
        out = {}
        for c, name in enumerate(self.classes):
            files = [f for f, lab in zip(self.files, self.labels) if lab == c]
            out[name] = [self.root / f for f in rng.sample(files, min(per_class, len(files)))]
        return out

    def counts(self) -> dict:
        """Images per class name (before decoding: unreadable files still count here)."""
        out = {c: 0 for c in self.classes}
        for label in self.labels:
            out[self.classes[label]] += 1
        return out


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name != "__MACOSX"


def _scan(root: Path) -> Tuple[List[str], List[str], List[int]]:
    """Classes (sub-folders holding images), image files relative to ``root``, and their labels."""
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and _visible(d)), key=lambda d: d.name)
    classes: List[str] = []
    files: List[str] = []
    labels: List[int] = []
    for d in class_dirs:
        imgs = sorted(
            p
            for p in d.rglob("*")
            if p.is_file()
            and p.suffix.lower() in IMAGE_EXTENSIONS
            and all(_visible(part) for part in p.relative_to(d).parents if part != Path("."))
            and _visible(p)
        )
        if not imgs:
            continue
        label = len(classes)
        classes.append(d.name)
        for p in imgs:
            files.append(p.relative_to(root).as_posix())
            labels.append(label)
    return classes, files, labels


def scan_image_folder(root: Path, min_classes: int = 2) -> ImageFolderListing:
    """List the images under ``root/<class>/...`` (nested folders inside a class are included).

    Raises :class:`DataError` with a plain explanation when the folder does not exist, holds no class
    folders with images, or fewer than ``min_classes`` classes.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"Dataset folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"Not a folder: {root}. Give a folder with one sub-folder per class, or a .zip of one.")
    try:
        classes, files, labels = _scan(root)
    except OSError as e:  # a folder or file inside that this user may not read (e.g. /proc under "/")
        where = e.filename or root
        raise DataError(
            f"Cannot read {where} ({e.strerror or e}) while looking for images in {root}. Choose a folder with one "
            f"sub-folder per class that you can read, or check its permissions."
        ) from e
    if not classes:
        raise DataError(
            f"No images found in {root}. Expected one sub-folder per class, each holding images "
            f"({', '.join(IMAGE_EXTENSIONS)}), e.g. {root}/daisy/1.jpg, {root}/roses/2.jpg."
        )
    if len(classes) < min_classes:
        raise DataError(
            f"Only one class found in {root} ('{classes[0]}'). A classifier needs at least {min_classes} "
            f"class sub-folders with images."
        )
    return ImageFolderListing(root=root, classes=tuple(classes), files=tuple(files), labels=tuple(labels))
