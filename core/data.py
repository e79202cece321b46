"""Datasets: where images come from, and the seeded stratified split saved with each run.

A *source* is one of ``"sample"`` (the built-in offline sample, generated on first use), ``"flowers"``
(the real 5-class dataset, downloaded on first use), a folder in the ImageFolder layout, or a ``.zip`` of
one. :func:`prepare_data` turns a :class:`~core.config.DataConfig` into decoded tensors split into
train/val/test.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from core.config import DataConfig
from core.errors import DataError
from core.imagefolder import ImageFolderListing, scan_image_folder
from core.progress import ProgressFn, no_progress
from core.settings import Settings
from core.tensor_cache import DecodedImages, load_images

SPLITS = ("train", "val", "test")


def resolve_source(source: str, settings: Settings, on_progress: ProgressFn = no_progress) -> Path:
    """The ImageFolder root for a source name or path, downloading/generating/extracting as needed."""
    if source == "sample":
        from core.sample import ensure_sample

        return ensure_sample(settings.cache_dir, on_progress=on_progress)
    if source == "flowers":
        from core.download import download_flowers

        return download_flowers(settings.cache_dir, on_progress=on_progress)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".zip":
        from core.download import extract_zip

        return extract_zip(path, settings.cache_dir, on_progress=on_progress)
    if not path.exists():
        raise DataError(f"Dataset not found: '{source}'. Use 'sample', 'flowers', a folder with one sub-folder "
                        f"per class, or a .zip of such a folder.")
    if path.is_file():
        raise DataError(f"'{source}' is a file, not a dataset. Give a folder with one sub-folder per class, "
                        f"or a .zip of such a folder.")
    return path


def limit_per_class(listing: ImageFolderListing, k: Optional[int], seed: int) -> Tuple[List[str], List[int]]:
    """At most ``k`` files per class, a seeded random choice (all files when ``k`` is None)."""
    files, labels = list(listing.files), list(listing.labels)
    if k is None:
        return files, labels
    rng = random.Random(seed)
    keep: List[int] = []
    for c in range(len(listing.classes)):
        idx = [i for i, lab in enumerate(labels) if lab == c]
        keep.extend(sorted(rng.sample(idx, min(k, len(idx)))))
    keep.sort()
    return [files[i] for i in keep], [labels[i] for i in keep]


def stratified_split(labels: Sequence[int], val_fraction: float, test_fraction: float,
                     seed: int) -> Dict[str, List[int]]:
    """Indices per split; every class is split in the same proportions (at least one val and test image
    per class when it has 3 or more)."""
    rng = random.Random(seed)
    by_class: Dict[int, List[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(int(lab), []).append(i)
    out: Dict[str, List[int]] = {s: [] for s in SPLITS}
    for c in sorted(by_class):
        idx = by_class[c][:]
        rng.shuffle(idx)
        n = len(idx)
        n_val = max(1, round(n * val_fraction)) if n >= 3 else 0
        n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
        out["val"] += idx[:n_val]
        out["test"] += idx[n_val:n_val + n_test]
        out["train"] += idx[n_val + n_test:]
    return {s: sorted(v) for s, v in out.items()}


@dataclass
class SplitTensors:
    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    key: str = ""  # identifies these exact images (for sharing cached activations); "" = unknown

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class PreparedData:
    root: Path
    classes: Tuple[str, ...]
    splits: Dict[str, SplitTensors]
    manifest: Dict  # JSON-ready: root, classes, {split: [[relative path, label], ...]}, skipped
    decoded: DecodedImages

    @property
    def skipped(self) -> Tuple[str, ...]:
        return self.decoded.skipped


def _split_key(decoded_key: str, indices: Sequence[int]) -> str:
    if not decoded_key:
        return ""
    return hashlib.sha1(f"{decoded_key}:{','.join(map(str, indices))}".encode()).hexdigest()[:20]


def prepare_data(cfg: DataConfig, settings: Settings, on_progress: ProgressFn = no_progress) -> PreparedData:
    """Resolve the source, decode once (cached), split; raises :class:`DataError` on unusable data."""
    root = resolve_source(cfg.source, settings, on_progress)
    listing = scan_image_folder(root)
    files, labels = limit_per_class(listing, cfg.limit_per_class, cfg.split_seed)
    decoded = load_images(root, listing.classes, files, labels, cfg.img_size, settings.cache_dir, on_progress)
    if len(decoded) == 0:
        raise DataError(f"None of the {len(files)} image files in {root} could be read.")
    present = sorted(set(decoded.labels.tolist()))
    if len(present) < 2:
        raise DataError(f"Only one class in {root} has readable images; a classifier needs at least two.")
    idx = stratified_split(decoded.labels.tolist(), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    if not idx["train"] or not idx["val"] or not idx["test"]:
        raise DataError(f"Too few images in {root} to split into train/val/test "
                        f"({len(decoded)} readable; each class needs at least 3).")
    splits = {s: SplitTensors(decoded.images[torch.tensor(ix)], decoded.labels[torch.tensor(ix)],
                              key=_split_key(decoded.key, ix))
              for s, ix in idx.items()}
    manifest = {
        "root": str(Path(root).resolve()),
        "classes": list(listing.classes),
        "splits": {s: [[decoded.files[i], int(decoded.labels[i])] for i in ix] for s, ix in idx.items()},
        "skipped": list(decoded.skipped),
    }
    return PreparedData(root=Path(root), classes=listing.classes, splits=splits, manifest=manifest, decoded=decoded)


def save_manifest(manifest: Dict, path: Path) -> None:
    path.write_text(json.dumps(manifest, indent=1))


def load_manifest(path: Path) -> Dict:
    return json.loads(Path(path).read_text())
