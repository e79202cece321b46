"""What the network gets: one photo of the dataset in a few augmented views, for the Train page's strip.

The views come from the engine's own augmentation (:class:`core.training.augment.Augmentation`) with a fixed seed,
so the strip is the same on every rerun and shows exactly what a run with that setting trains on.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

from core.data.decode import decode_image
from core.data.imagefolder import scan_image_folder
from core.data.sources import resolve_source
from core.settings import Settings
from core.training.augment import Augmentation, views_of

STRIP_VIEWS = 8
STRIP_PX = 128  # shown small, eight abreast


def augment_strip(
    source: str, setting: str, settings: Settings, n: int = STRIP_VIEWS, px: int = STRIP_PX, seed: int = 0
) -> Tuple[str, List[np.ndarray]]:
    """(the photo's path in the dataset, ``n`` uint8 ``(px, px, 3)`` views of it with ``setting``): the dataset's
    first photo in a seeded choice, so another seed shows another photo."""
    listing = scan_image_folder(resolve_source(source, settings))
    name = listing.files[np.random.default_rng(seed).integers(len(listing.files))]
    image = torch.from_numpy(decode_image(listing.root / name, px)).permute(2, 0, 1)
    views = views_of(image, Augmentation(setting), n=n, seed=seed)
    return name, [v.permute(1, 2, 0).numpy() for v in views]
