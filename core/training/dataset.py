"""A run's data: the source resolved, decoded once (cached), and split into train/val/test tensors.

:func:`prepare_data` turns a :class:`~core.training.config.DataConfig` into a :class:`PreparedData`, with the
manifest (which file went to which split) that the run store saves as ``split.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import torch

from core.data.imagefolder import scan_image_folder
from core.data.sources import resolve_source
from core.data.splits import SplitTensors, limit_per_class, split_key, stratified_split
from core.data.tensor_cache import DecodedImages, load_images
from core.data.uploads import lease_source
from core.errors import DataError
from core.progress import ProgressFn, no_progress
from core.settings import Settings
from core.training.config import DataConfig


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


def prepare_data(cfg: DataConfig, settings: Settings, on_progress: ProgressFn = no_progress) -> PreparedData:
    """Resolve the source, decode once (cached), split; raises :class:`DataError` on unusable data. An uploaded
    zip is leased while it is read, so that the upload cache does not evict it meanwhile."""
    with lease_source(cfg.source, settings):
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
        raise DataError(
            f"Too few images in {root} to split into train/val/test "
            f"({len(decoded)} readable; each class needs at least 3)."
        )
    splits = {
        s: SplitTensors(
            decoded.images[torch.tensor(ix)], decoded.labels[torch.tensor(ix)], key=split_key(decoded.key, ix)
        )
        for s, ix in idx.items()
    }
    manifest = {
        "root": str(Path(root).resolve()),
        "classes": list(listing.classes),
        "splits": {s: [[decoded.files[i], int(decoded.labels[i])] for i in ix] for s, ix in idx.items()},
        "skipped": list(decoded.skipped),
    }
    return PreparedData(root=Path(root), classes=listing.classes, splits=splits, manifest=manifest, decoded=decoded)
