"""What a pretrained backbone already sees before any training: its own top-k over ImageNet's 1,000 classes.

The class names come with timm (``timm.data.ImageNetInfo``), so this works offline. A daisy photo should come
out as ImageNet's "daisy"; a rose, as nearby classes (ImageNet has no rose): the features know flowers already.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Tuple

from PIL import Image

from core.lru import LockedLRU
from core.models.backbones import get_backbone, imagenet_classifier
from core.models.classifier import Classifier
from core.runs.predictions import predict_image
from core.settings import Settings

_models: LockedLRU[tuple] = LockedLRU(
    maxsize=2
)  # (backbone, cache folder) -> (model, source): a few seconds to build and load


@lru_cache(maxsize=1)
def imagenet_names() -> List[str]:
    """ImageNet's 1,000 class names in the classifiers' order, short ("daisy", "tench")."""
    from timm.data import ImageNetInfo  # noqa: PLC0415 (lazy: timm takes about a second to import)

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0] for i in range(info.num_classes())]


def imagenet_model(backbone: str, settings: Settings, allow_download: bool = True) -> Tuple[Classifier, str]:
    """``backbone`` with its ImageNet weights and its own 1,000-class head, for inference; and where the weights
    came from. Built once per process (per backbone)."""
    key = (backbone, str(settings.cache_dir))
    return _models.get_or_build(key, lambda: imagenet_classifier(backbone, settings, allow_download))


def imagenet_top(
    backbone: str, photo: Image.Image, settings: Settings, k: int = 5, model: Optional[Classifier] = None
) -> List[Tuple[str, float]]:
    """The backbone's top-``k`` ImageNet classes for ``photo`` (from :func:`core.runs.predictions.load_photo`),
    as ``(name, probability)``, most likely first."""
    model = model or imagenet_model(backbone, settings)[0]
    return predict_image(model, imagenet_names(), get_backbone(backbone).imagenet_px, photo, k=k)
