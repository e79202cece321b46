"""Where a run looks: class activation maps of one photo, with the ``grad-cam`` package (``pytorch_grad_cam``).

A CAM weighs the channels of one late conv layer (each backbone's registry ``cam_layer``: ResNet18's
``layer4``, EfficientNet-Lite's ``bn2``) by how much each matters for one class, and sums them into a coarse map
of the photo: red where the evidence for that class is. :data:`CAM_METHODS` lists the methods offered:

* Grad-CAM and Grad-CAM++ weigh the channels by the class score's gradient at the target layer: one forward
  pass, and a backward pass through the pooling and the head only (see :data:`CUT_AT_LAYER`). About 0.02 s a run
  at 224 px for EfficientNet-Lite0 on 2 cores (``benchmarks/bench_explain.py``).
* Score-CAM weighs them by the class score of the photo masked by each channel: one forward pass per channel
  (512 for ResNet18's ``layer4``, 1280 for EfficientNet-Lite's ``bn2``), all masked copies made at once. For
  Lite0 on 2 cores: about 1 s a run at 64 px, 30 s at 224 px (735 MB of copies). So it is checked before it
  runs: refused, naming the cost, when the copies would take more than :data:`SCORECAM_MAX_BYTES` or when one
  timed batch of them, times the batches needed, is over :data:`SCORECAM_MAX_SECONDS`. A run trained at a
  small size passes; 224 px does not.

The photo is explained as the run predicts it (:func:`core.runs.predictions.predict_image`'s preprocessing), at
the run's own image size unless another is asked for. The pass is fp32 on the model's device (the app's models
are fp32 on the CPU). The model is put in eval mode with its parameters frozen for the pass and given back as it
came: training flag, ``requires_grad``, no gradients and no hooks left (pytorch_grad_cam's context manager
removes its own). Cached models are shared by the app's sessions: :func:`explain_photo` hooks a private copy
(:func:`private_copy`), and hooked passes take :data:`HOOKS_LOCK` (as :mod:`core.explain.features` does), one at a
time on 2 cores.

The ``grad-cam`` package loads matplotlib and takes about a second to import: it is imported on first use.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.data.decode import resize_square, to_float
from core.errors import ConfigError
from core.models.backbones import get_backbone

HOOKS_LOCK = threading.RLock()  # one hooked pass at a time on any model: the app's cached models are shared
# Grad-CAM needs the class score's gradient at the target layer only. With the parameters frozen, the graph
# starts at the layer's output (a hook makes it a leaf): the body runs as plain inference and the backward pass
# covers the pooling and the head alone. False: the graph starts at the input, as pytorch_grad_cam's own examples
# do; the same maps, measured in benchmarks/bench_explain.py.
CUT_AT_LAYER = True
SCORECAM_BATCH = 64  # masked copies a forward pass: 64 was faster than 16 and 32 (benchmarks/bench_explain.py)
SCORECAM_MAX_SECONDS = 10.0  # Score-CAM is refused when its measured estimate is longer …
SCORECAM_MAX_BYTES = 512 * 2**20  # … or when its masked copies of the photo (all made at once) take more memory


@dataclass(frozen=True)
class CamMethod:
    display: str
    class_name: str  # in pytorch_grad_cam
    note: str  # its cost on a CPU, in one line
    uses_gradients: bool = True

    @property
    def cls(self) -> type:
        """The pytorch_grad_cam class (imported on first use: the package loads matplotlib)."""
        return getattr(importlib.import_module("pytorch_grad_cam"), self.class_name)


CAM_METHODS = {
    "gradcam": CamMethod(
        "Grad-CAM", "GradCAM", "One forward pass and a short backward one: about 0.02 s a run at 224 px on 2 CPU cores."
    ),
    "gradcam++": CamMethod(
        "Grad-CAM++",
        "GradCAMPlusPlus",
        "Grad-CAM's passes and cost, channels weighed by higher-order gradients: often tighter around several objects.",
    ),
    "scorecam": CamMethod(
        "Score-CAM",
        "ScoreCAM",
        "No gradients: one forward pass per channel of the target layer (1280 for EfficientNet-Lite): about 1 s a "
        f"run at 64 px, 30 s at 224 px on 2 CPU cores; refused when it would take over {SCORECAM_MAX_SECONDS:.0f} s.",
        uses_gradients=False,
    ),
}


def get_method(name: str) -> CamMethod:
    if name not in CAM_METHODS:
        raise ConfigError(f"Unknown CAM method '{name}'. Choose one of: {', '.join(CAM_METHODS)}.")
    return CAM_METHODS[name]


def private_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` to hook for one pass. The app's cached models are shared by its sessions' threads, and
    :data:`HOOKS_LOCK` only serialises hooked passes: an unhooked one on another thread (Compare's predictions)
    would run through the hooks of a shared model, and they would record (or cut) its activations too. About
    20 ms for EfficientNet-Lite0."""
    return copy.deepcopy(model)


def target_layer(model: nn.Module, backbone: str) -> Tuple[str, nn.Module]:
    """The layer a run's CAM weighs, as ``("body.bn2", module)``: the registry's ``cam_layer`` of ``backbone``."""
    name = get_backbone(backbone).cam_layer
    return f"body.{name}", model.body.get_submodule(name)


@contextlib.contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode, parameters frozen, under :data:`HOOKS_LOCK`; the training flag and ``requires_grad`` restored."""
    with HOOKS_LOCK:
        was_training = model.training
        flags = [(p, p.requires_grad) for p in model.parameters()]
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            model.eval()
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            model.train(was_training)


def _leaf(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """A forward hook: the layer's output as a new leaf of the autograd graph, the graph's start."""
    return output.detach().requires_grad_(True)


@torch.no_grad()
def layer_channels(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> int:
    """How many channels ``layer`` outputs for ``x``."""
    seen = {}

    def hook(module, inputs, output) -> None:  # returning anything would replace the output
        seen["channels"] = output.shape[1]

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    return seen["channels"]


@torch.no_grad()
def _batch_seconds(model: nn.Module, x: torch.Tensor) -> float:
    batch = x.detach().expand(SCORECAM_BATCH, -1, -1, -1).contiguous()
    t = time.perf_counter()
    model(batch)
    return time.perf_counter() - t


def scorecam_estimate(model: nn.Module, x: torch.Tensor, channels: int) -> float:
    """Estimated seconds of Score-CAM on ``x`` with a target layer of ``channels``: one batch of its masked copies
    timed, times the batches it needs."""
    batches = math.ceil(channels / SCORECAM_BATCH)
    dt = _batch_seconds(model, x)
    if batches * dt > SCORECAM_MAX_SECONDS:  # a first pass may include one-off set-up: time a second one
        dt = min(dt, _batch_seconds(model, x))
    return batches * dt


def _check_scorecam(model: nn.Module, x: torch.Tensor, layer: nn.Module, layer_name: str) -> None:
    """A :class:`ConfigError` naming the cost when Score-CAM would take too much memory, or too long (measured)."""
    channels = layer_channels(model, x, layer)
    copies = channels * x[0].numel() * x.element_size()
    if copies > SCORECAM_MAX_BYTES:
        raise ConfigError(
            f"Score-CAM would need {copies / 2**20:,.0f} MB here: it masks the photo once per channel of "
            f"{layer_name} ({channels} channels at {x.shape[-1]} px) and keeps every copy in memory, over the "
            f"{SCORECAM_MAX_BYTES // 2**20} MB allowed. Use Grad-CAM or Grad-CAM++, or a smaller image."
        )
    seconds = scorecam_estimate(model, x, channels)
    if seconds > SCORECAM_MAX_SECONDS:
        raise ConfigError(
            f"Score-CAM would take about {seconds:.0f} s here: it runs the network once per channel of {layer_name} "
            f"({channels} channels at {x.shape[-1]} px, measured on this machine), over the "
            f"{SCORECAM_MAX_SECONDS:.0f} s allowed. Use Grad-CAM or Grad-CAM++ (one pass each), or a smaller image."
        )


def _cams(
    model: nn.Module,
    x: torch.Tensor,
    layer: nn.Module,
    class_indices: Sequence[Optional[int]],
    method: str,
    layer_name: str = "the target layer",
) -> Tuple[List[np.ndarray], List[float], torch.Tensor]:
    """One ``H×W`` map in [0, 1] per class index (``None``: the model's top class), the seconds of each, and the
    logits of ``x`` (1, K) from the first pass."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: PLC0415 (lazy: see docstring)

    spec = get_method(method)
    maps, seconds, logits, cut = [], [], None, None
    with explaining(model):
        device = next(model.parameters()).device
        x = x.detach().to(device, torch.float32)
        if not spec.uses_gradients:
            _check_scorecam(model, x, layer, layer_name)
        elif CUT_AT_LAYER:
            cut = layer.register_forward_hook(_leaf, prepend=True)  # before the CAM's own hooks: they see the leaf
        else:
            x.requires_grad_(True)
        try:
            with spec.cls(model=model, target_layers=[layer]) as cam:
                cam.batch_size = SCORECAM_BATCH
                for index in class_indices:
                    t = time.perf_counter()
                    targets = None if index is None else [ClassifierOutputTarget(int(index))]
                    maps.append(np.asarray(cam(input_tensor=x, targets=targets)[0], dtype=np.float32))
                    seconds.append(time.perf_counter() - t)
                    if logits is None:
                        logits = cam.outputs.detach().float().cpu()
        finally:
            if cut is not None:
                cut.remove()
    return maps, seconds, logits


def heatmap(model: nn.Module, x: torch.Tensor, layer: nn.Module, class_index: Optional[int], method="gradcam"):
    """The CAM of ``model`` for ``class_index`` (``None``: its top class) on ``x`` (1, 3, H, W): an ``H×W`` float32
    array in [0, 1], weighing ``layer``'s channels. Works with any classifier ``nn.Module``."""
    return _cams(model, x, layer, [class_index], method)[0][0]


@dataclass
class ClassCam:
    label: str
    prob: float
    heatmap: np.ndarray  # H×W float32 in [0, 1], the size the model saw
    overlay: Image.Image  # the photo as the model saw it, the map over it
    seconds: float
    role: str  # "predicted", "true class" or "asked"


@dataclass
class Explanation:
    prediction: Tuple[str, float]
    top3: List[Tuple[str, float]]  # most likely first
    target_layer: str  # e.g. "body.bn2"
    method: str
    img_size: int  # the size the photo was explained at …
    size_note: str  # … and why: the run's own image size, or asked for
    precision: str  # of the pass: "float32"
    cams: List[ClassCam] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cams)


def overlay(photo_px: np.ndarray, cam: np.ndarray) -> Image.Image:
    """``cam`` over the uint8 ``(H, W, 3)`` photo, with pytorch_grad_cam's ``show_cam_on_image``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: PLC0415 (lazy: see the module docstring)

    return Image.fromarray(show_cam_on_image(photo_px.astype(np.float32) / 255.0, cam, use_rgb=True))


def explain_photo(
    model: nn.Module,
    backbone: str,
    classes: Sequence[str],
    img_size: int,
    photo: Image.Image,
    method: str = "gradcam",
    true_class: Optional[str] = None,
    classes_to_explain: Optional[Sequence[str]] = None,
    at_size: Optional[int] = None,
) -> Explanation:
    """Where a run (``model``, a :class:`~core.models.classifier.Classifier` trained on ``classes`` at
    ``img_size`` px) looks in ``photo`` (from :func:`core.runs.predictions.load_photo`).

    One CAM per class of ``classes_to_explain`` when given; else the predicted class's, plus ``true_class``'s when
    given and different (a second pass). ``at_size`` explains the photo at another size than the run's
    ``img_size`` (the Explanation's ``img_size`` and ``size_note`` say which). Raises :class:`ConfigError` for
    an unknown method or class, and when Score-CAM would cost too much here.
    """
    get_method(method)
    for name in [*(classes_to_explain or []), *([true_class] if true_class else [])]:
        if name not in classes:
            raise ConfigError(f"'{name}' is not one of the run's classes: {', '.join(classes)}.")
    px = int(at_size or img_size)
    size_note = (
        f"{px} px, the run's own image size"
        if px == img_size
        else f"{px} px, as asked (the run was trained at {img_size} px)"
    )
    model = private_copy(model)
    layer_name, layer = target_layer(model, backbone)
    seen = resize_square(photo, px)
    x = to_float(torch.from_numpy(seen).permute(2, 0, 1).unsqueeze(0))

    if classes_to_explain:
        wanted: List[Tuple[Optional[int], str]] = [(classes.index(c), "asked") for c in classes_to_explain]
    else:
        wanted = [(None, "predicted")]
    maps, seconds, logits = _cams(model, x, layer, [i for i, _ in wanted], method, layer_name)
    probs = logits.softmax(1)[0]
    pred = int(probs.argmax())
    wanted = [(pred if i is None else i, role) for i, role in wanted]
    if not classes_to_explain and true_class and classes.index(true_class) != pred:
        wanted.append((classes.index(true_class), "true class"))
        more, more_seconds, _ = _cams(model, x, layer, [wanted[-1][0]], method, layer_name)
        maps, seconds = maps + more, seconds + more_seconds
    top = probs.topk(min(3, len(classes)))
    return Explanation(
        prediction=(classes[pred], float(probs[pred])),
        top3=[(classes[int(i)], float(p)) for p, i in zip(top.values, top.indices)],
        target_layer=layer_name,
        method=method,
        img_size=px,
        size_note=size_note,
        precision=str(next(model.parameters()).dtype).replace("torch.", ""),
        cams=[
            ClassCam(classes[i], float(probs[i]), m, overlay(seen, m), s, role)
            for (i, role), m, s in zip(wanted, maps, seconds)
        ],
    )
