"""Splitting a dataset: at most K images per class, the seeded stratified train/val/test split, and the
tensors of one split.

The split is saved with every run (``split.json``), so a run is always evaluated on exactly its own test
images.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from core.data.imagefolder import ImageFolderListing

SPLITS = ("train", "val", "test")


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


def stratified_split(
    labels: Sequence[int], val_fraction: float, test_fraction: float, seed: int
) -> Dict[str, List[int]]:
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
        out["test"] += idx[n_val : n_val + n_test]
        out["train"] += idx[n_val + n_test :]
    return {s: sorted(v) for s, v in out.items()}


@dataclass
class SplitTensors:
    images: torch.Tensor  # uint8 (N, 3, S, S)
    labels: torch.Tensor  # int64 (N,)
    key: str = ""  # identifies these exact images (for sharing cached activations); "" = unknown

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_key(decoded_key: str, indices: Sequence[int]) -> str:
    """Identifies the images ``indices`` of the decoded set ``decoded_key`` ("" when that is unknown)."""
    if not decoded_key:
        return ""
    return hashlib.sha1(f"{decoded_key}:{','.join(map(str, indices))}".encode()).hexdigest()[:20]
