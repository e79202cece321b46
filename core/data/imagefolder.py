"""Scan a folder in the torchvision ``ImageFolder`` layout: one sub-folder per class.

Only files with an image extension are listed; hidden files and folders are ignored. Whether each file
really decodes is found out later, when images are decoded once (see :mod:`core.data.tensor_cache`), where
unreadable files are skipped and counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

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


def _images_under(folder: Path) -> List[Path]:
    """The image files anywhere under ``folder``, sorted, leaving out hidden files and folders (and __MACOSX)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and all(_visible(part) for part in p.relative_to(folder).parents if part != Path("."))
        and _visible(p)
    )


def _scan(root: Path) -> Tuple[List[str], List[str], List[int]]:
    """Classes (sub-folders holding images), image files relative to ``root``, and their labels."""
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and _visible(d)), key=lambda d: d.name)
    classes: List[str] = []
    files: List[str] = []
    labels: List[int] = []
    for d in class_dirs:
        imgs = _images_under(d)
        if not imgs:
            continue
        label = len(classes)
        classes.append(d.name)
        for p in imgs:
            files.append(p.relative_to(root).as_posix())
            labels.append(label)
    return classes, files, labels


def _names(names: List[str], most: int = 5) -> str:
    """``a, b, c`` — or ``a, b, c, d, e and 3 more``."""
    shown = ", ".join(names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _layout_problem(root: Path, classes: List[str], files: List[str], where: str, zipped: bool) -> str:
    """What ``root`` holds and what to choose instead, when it is not a dataset of at least two classes: said to
    the person who chose it (``where``: how they know it; ``zipped``: it came as a .zip, so the fix is another
    zip)."""
    choose = "zip" if zipped else "choose"
    expected = (
        "A dataset is a folder with one sub-folder per class, each holding that class's images "
        "(e.g. daisy/1.jpg, roses/2.jpg)."
    )
    subdirs = sorted((d for d in root.iterdir() if d.is_dir() and _visible(d)), key=lambda d: d.name)
    loose = [p for p in root.iterdir() if p.is_file() and _visible(p)]
    loose_images = [p for p in loose if p.suffix.lower() in IMAGE_EXTENSIONS]
    if len(classes) > 1:  # fewer than asked for
        return f"{where} holds only {len(classes)} class sub-folders with images ({_names(classes)}). {expected}"
    if classes:  # exactly one sub-folder holds images
        (name,) = classes
        inner = [d for d in (root / name).iterdir() if d.is_dir() and _visible(d) and _images_under(d)]
        found = f"{where} holds 1 sub-folder with images ({name}, {_plural(len(files), 'image')})"
        if len(inner) >= 2:  # the dataset is one level further down: that sub-folder is the one to give
            return (
                f"{found}, whose own {len(inner)} sub-folders ({_names([d.name for d in inner])}) look like the "
                f"classes. {choose.capitalize()} {name} itself, which holds one sub-folder per class."
            )
        return (
            f"{found}, but a classifier needs at least 2 classes. {choose.capitalize()} its parent instead: the "
            f"folder that holds {name} beside the other classes, one sub-folder per class."
        )
    if loose_images:
        return (
            f"{where} holds {_plural(len(loose_images), 'image')} directly, in no class sub-folder. {expected} If "
            f"these are the images of one class, {choose} its parent, which should hold one sub-folder per class."
        )
    if subdirs:
        return (
            f"{where} holds {_plural(len(subdirs), 'sub-folder')} ({_names([d.name for d in subdirs])}) but no "
            f"images ({', '.join(IMAGE_EXTENSIONS)}) in them. {expected}"
        )
    what = f"only {_plural(len(loose), 'file')} that are not images" if loose else "nothing"
    return f"{where} holds {what}. {expected}"


def scan_image_folder(root: Path, min_classes: int = 2, *, shown_as: Optional[str] = None) -> ImageFolderListing:
    """List the images under ``root/<class>/...`` (nested folders inside a class are included).

    Raises :class:`DataError` with a plain explanation when the folder does not exist, or does not hold at least
    ``min_classes`` class folders with images: what it holds instead (images loose in it, one class folder, the
    dataset one level down) and what to choose. ``shown_as`` is how the user knows the folder (an uploaded zip's
    file name): messages name it so, instead of its path in the cache.
    """
    root = Path(root).expanduser()
    where = f"'{shown_as}'" if shown_as else f"The folder {root}"
    if not root.exists():
        raise DataError(f"Dataset folder not found: {root}. Check the path for a typo.")
    if not root.is_dir():
        raise DataError(f"Not a folder: {root}. Give a folder with one sub-folder per class, or a .zip of one.")
    try:
        classes, files, labels = _scan(root)
        if len(classes) < min_classes:
            raise DataError(_layout_problem(root, classes, files, where, zipped=shown_as is not None))
    except OSError as e:  # a folder or file inside that this user may not read (e.g. /proc under "/")
        raise DataError(
            f"Cannot read {e.filename or root} ({e.strerror or e}) while looking for images in {shown_as or root}. "
            f"Choose a folder with one sub-folder per class that you can read, or check its permissions."
        ) from e
    return ImageFolderListing(root=root, classes=tuple(classes), files=tuple(files), labels=tuple(labels))
