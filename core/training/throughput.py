"""How fast this machine does each kind of work a regime pays for — measured once, kept per machine.

The race planner (:mod:`core.training.planner`) turns a time budget into image sizes and epochs; for that it needs
seconds per image of every step, on *this* CPU: a laptop with AVX2 runs the same step several times slower
than a server with AVX-512 BF16. :func:`probe` times each step on a small batch at two image sizes (a few
seconds in all, plus one-off ONNX exports that the runs reuse), and between and beyond those sizes the cost
is interpolated as a power of the image side. Results are kept in ``<cache>/throughput/``, keyed by the
machine (CPU, ISA, cores, threads, torch), the backbone, its freeze point and the precision.

Kinds of work (seconds per image):

=============== ==============================================================================
``body``        the frozen backbone as an inference pass (``transfer`` computing its features)
``prefix``      ``finetune``'s frozen prefix as an inference pass
``rest``        the frozen stages between ``finetune``'s cut and the features (``transfer`` after it)
``augment``     flip + rotation of one image (augmented views)
``suffix_train``  ``finetune``'s trainable suffix, forward + backward + step, on cached activations
``suffix_eval`` the same suffix, inference
``train``       the whole network, forward + backward + step (``scratch`` and ``full``); measured at 64 and 128 px,
                and at 224 px scaled from 128 like ``eval`` (the costliest step, so timed only where it is cheap)
``eval``        the whole network, inference (their validation and test passes)
=============== ==============================================================================
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from core.data.decode import to_float
from core.files import write_json_atomic
from core.models.backbones import create_model, get_backbone
from core.models.device import autocast_context, compute_setup, machine_id, to_device
from core.models.regimes import apply_regime
from core.models.runtime import example_images, frozen_pass
from core.progress import ProgressFn, no_progress
from core.settings import Settings
from core.training.augment import Augmentation
from core.training.engine import make_optimizer
from core.training.feature_cache import compact

PROBE_SIZES = (128, 224)
SMALL_SIZE = 64  # whole-network kinds (``train``, ``eval``) are measured here too: ``scratch`` plans down to it
PROBE_BATCH = 32  # the engine's batch size
PROBE_VERSION = 4
KINDS = ("body", "prefix", "rest", "augment", "suffix_train", "suffix_eval", "train", "eval")


@dataclass
class Throughput:
    """Seconds per image of each kind of work at the probe sizes, on one machine for one backbone."""

    backbone: str
    precision: str
    freeze: int
    machine: str
    per_image: Dict[str, Dict[str, float]]  # kind -> {str(size): seconds per image}
    build_seconds: float  # building the model with its ImageNet weights
    warmup: Dict[str, Dict[str, float]] = field(default_factory=dict)  # training kinds: first-step extra seconds
    runtimes: Dict[str, str] = field(default_factory=dict)  # frozen-pass runtime of each frozen kind
    probe_seconds: float = 0.0

    def seconds(self, kind: str, size: int, n: float = 1.0) -> float:
        """Seconds for ``n`` images of ``kind`` at ``size`` px (power-law in the side between probe sizes)."""
        return n * _interpolate(self.per_image[kind], size)

    def warmup_seconds(self, kind: str, size: int) -> float:
        """The extra seconds of a run's first step of ``kind`` at ``size`` px."""
        table = self.warmup.get(kind)
        return _interpolate(table, size) if table and all(v > 0 for v in table.values()) else 0.0

    def to_dict(self) -> Dict:
        return asdict(self)


def _interpolate(table: Dict[str, float], size: int) -> float:
    """Seconds per image at ``size``: a power law in the side through the two measured sizes around it (the
    nearest two beyond the ends). Small images cost more than the law from large ones says (fixed costs per
    layer), so the whole-network kinds are also measured at :data:`SMALL_SIZE`."""
    points = sorted((int(k), v) for k, v in table.items())
    i = sum(1 for s, _ in points[1:-1] if s < size)  # the segment holding size (the end ones beyond the ends)
    (s0, t0), (s1, t1) = points[i], points[i + 1]
    exponent = math.log(t1 / t0) / math.log(s1 / s0) if t0 > 0 and t1 > 0 and s1 != s0 else 2.0
    exponent = min(max(exponent, 1.0), 3.0)  # guard against a noisy probe
    return t0 * (size / s0) ** exponent


def _path(settings: Settings, backbone: str, precision: str, freeze: int) -> Path:
    key = hashlib.sha1(f"{PROBE_VERSION}|{machine_id()}|{backbone}|{precision}|{freeze}".encode()).hexdigest()[:16]
    return settings.cache_dir / "throughput" / f"{backbone}-{key}.json"


def cached(backbone: str, settings: Settings, precision: str = "auto") -> Optional[Throughput]:
    """The probe kept for this machine and backbone, or None."""
    precision = compute_setup("auto", precision).precision
    freeze = get_backbone(backbone).notebook_freeze
    path = _path(settings, backbone, precision, freeze)
    try:
        return Throughput(**json.loads(path.read_text())) if path.is_file() else None
    except (OSError, ValueError, TypeError):
        return None


def _timed(fn: Callable[[], object], calls: int = 3, warmup: int = 3) -> Tuple[float, float]:
    """``(steady seconds per call, extra seconds of the first calls)``: the median of ``calls`` timed calls after
    ``warmup`` ones, which pay for building kernels and faulting memory in (a run pays that once per size;
    training steps take about three calls to settle on a 2-core CPU)."""
    times = []
    for _ in range(warmup + calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    steady = statistics.median(times[warmup:])
    return steady, max(0.0, sum(times[:warmup]) - warmup * steady)


def _train_step(
    module: torch.nn.Module,
    params,
    batch: Callable[[], torch.Tensor],
    y: torch.Tensor,
    precision: str,
    device: torch.device,
) -> Callable[[], None]:
    """One step as the engine takes it: the input made, forward, loss, backward, update, the loss read back."""
    opt = make_optimizer(params, 1e-4, 0.0, device)

    def step() -> None:
        with autocast_context(precision, device):
            logits = module(batch())
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        int((logits.argmax(1) == y).sum())

    return step


def probe(
    backbone: str,
    settings: Settings,
    precision: str = "auto",
    on_progress: ProgressFn = no_progress,
    refresh: bool = False,
) -> Throughput:
    """Measure (or read back) this machine's :class:`Throughput` for ``backbone``."""
    if not refresh:
        found = cached(backbone, settings, precision)
        if found is not None:
            return found
    t_start = time.perf_counter()
    compute = compute_setup("auto", precision)
    device, precision, cl = compute.device, compute.precision, compute.channels_last
    spec = get_backbone(backbone)
    pretrained = spec.weights_source(settings) is not None  # real weights: the exported graphs are the runs' own
    create_model(backbone, 5, pretrained=pretrained, settings=settings, allow_download=False)  # imports, file cache
    t = time.perf_counter()
    model, _ = create_model(backbone, 5, pretrained=pretrained, settings=settings, allow_download=False)
    build_seconds = time.perf_counter() - t
    model = compute.place(model)
    per_image: Dict[str, Dict[str, float]] = {k: {} for k in KINDS}
    warmup: Dict[str, Dict[str, float]] = {"train": {}, "suffix_train": {}}
    runtimes: Dict[str, str] = {}
    steps = len(PROBE_SIZES) * len(KINDS) + 1  # train is measured at two sizes, and eval at a third
    done = 0

    def record(kind: str, size: int, timing: Tuple[float, float]) -> None:
        nonlocal done
        per_image[kind][str(size)] = timing[0] / PROBE_BATCH
        if kind in warmup:
            warmup[kind][str(size)] = timing[1]
        done += 1
        on_progress(done, steps, f"measuring this machine: {kind.replace('_', ' ')} at {size} px")

    def frozen(kind: str, module: torch.nn.Module, x: torch.Tensor, size: int) -> torch.Tensor:
        run = frozen_pass(module, x, precision, device, cl, "auto", settings.cache_dir, remeasure=refresh)
        runtimes[kind] = run.runtime
        record(kind, size, _timed(lambda: run(x), warmup=2))
        return run(x)

    y = torch.randint(0, 5, (PROBE_BATCH,))
    g = torch.Generator().manual_seed(0)
    augment = Augmentation("flip-rotate")  # what the plan assumes every run pays (the default)
    for size in PROBE_SIZES:
        images = (example_images(size, PROBE_BATCH) * 255).to(torch.uint8)
        x = to_float(images)
        transfer = apply_regime(model, "transfer", backbone)
        frozen("body", transfer.prefix, x, size)
        finetune = apply_regime(model, "finetune", backbone)
        h = compact(frozen("prefix", finetune.prefix, x, size))
        frozen("rest", torch.nn.Sequential(*list(transfer.prefix)[finetune.cut :]), h.float(), size)
        record("augment", size, _timed(lambda: augment(to_float(images), g), warmup=1))
        finetune.train_mode()
        record(
            "suffix_train",
            size,
            _timed(
                calls=5,
                fn=_train_step(
                    finetune.suffix,
                    [p for p in finetune.suffix.parameters() if p.requires_grad],
                    lambda: to_device(h.float(), device, cl),
                    y,
                    precision,
                    device,
                ),
            ),
        )
        finetune.eval_mode()
        with torch.no_grad(), autocast_context(precision, device):
            record("suffix_eval", size, _timed(lambda: finetune.suffix(to_device(h.float(), device, cl)), warmup=2))
            record("eval", size, _timed(lambda: model(to_device(x, device, cl)), warmup=2))
    # the costliest step, last (it changes the weights the frozen passes above were exported with): timed at the
    # small sizes only, and scaled like `eval` above them
    for size in (SMALL_SIZE, PROBE_SIZES[0]):
        images = (example_images(size, PROBE_BATCH) * 255).to(torch.uint8)
        if size not in PROBE_SIZES:
            model.eval()
            with torch.no_grad(), autocast_context(precision, device):
                record("eval", size, _timed(lambda: model(to_device(to_float(images), device, cl)), warmup=2))
        apply_regime(model, "full", backbone).train_mode()
        record(
            "train",
            size,
            _timed(
                calls=5,
                fn=_train_step(
                    model,
                    list(model.parameters()),
                    lambda: to_device(augment(to_float(images), g), device, cl),
                    y,
                    precision,
                    device,
                ),
            ),
        )
    small, large = (str(s) for s in PROBE_SIZES)
    per_image["train"][large] = per_image["train"][small] * per_image["eval"][large] / per_image["eval"][small]
    warmup["train"][large] = warmup["train"][small] * per_image["eval"][large] / per_image["eval"][small]
    result = Throughput(
        backbone=backbone,
        precision=precision,
        freeze=spec.notebook_freeze,
        machine=machine_id(),
        per_image=per_image,
        warmup=warmup,
        build_seconds=round(build_seconds, 3),
        runtimes=runtimes,
        probe_seconds=round(time.perf_counter() - t_start, 1),
    )
    save(result, settings)
    return result


def save(tp: Throughput, settings: Settings) -> None:
    """Keep ``tp`` as this machine's measurement for its backbone and precision."""
    path = _path(settings, tp.backbone, tp.precision, tp.freeze)
    try:
        write_json_atomic(path, tp.to_dict(), durable=False)
    except OSError:  # a read-only cache only means probing again next time
        pass
