"""The training engine: one loop for every regime, reporting through events, cancellable every batch.

Fast paths (each measured in BENCHMARKS.md, each can be switched off in :class:`~core.config.TrainConfig`):

* **Cached features** — when the whole body is frozen (the ``transfer`` regime), its output for a fixed
  number of augmented views of the training set (and one plain view of val) is computed once; the
  epochs then train the head on those features, cycling through the views.
* **bf16 autocast + channels_last** on CPUs with native bf16 (AVX-512 BF16 / AMX), fp32 otherwise.
* Images are uint8 tensors decoded once (:mod:`core.tensor_cache`); augmentation runs batched on tensors.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from core.augment import augment, to_float
from core.backbones import Classifier
from core.config import TrainConfig
from core.data import SplitTensors
from core.events import BatchEnd, EpochEnd, EventFn, PhaseProgress, no_events
from core.regimes import body_is_frozen, set_train_mode

StopFn = Callable[[], bool]


def never_stop() -> bool:
    return False


def pick_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, then cpu — or exactly what was asked for."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch
        return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """"bf16" or "fp32". ``auto`` picks bf16 where the hardware does it natively."""
    if requested != "auto":
        return requested
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def autocast_context(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_threads(num_threads: Optional[int]) -> int:
    n = num_threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    n: int
    predictions: torch.Tensor  # int64 (N,)
    probabilities: torch.Tensor  # float32 (N, C)


@dataclass
class FitResult:
    status: str  # "finished" or "interrupted"
    epochs_done: int
    best_epoch: int
    best_val_loss: float
    best_val_acc: float
    history: List[Dict] = field(default_factory=list)
    train_seconds: float = 0.0
    setup: Dict = field(default_factory=dict)  # device, precision, channels_last, feature_cache, threads


def make_adam(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    """Adam, using the fused single-kernel update where this torch/device has it (same maths, ~6% faster
    ResNet18 training steps on the 2-core benchmark CPU)."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


class _Stopped(Exception):
    pass


@torch.inference_mode()
def evaluate_model(model: Classifier, data: SplitTensors, batch_size: int = 64, precision: str = "fp32",
                   device: Optional[torch.device] = None, channels_last: bool = False,
                   should_stop: StopFn = never_stop) -> EvalResult:
    """Loss, accuracy and predictions of ``model`` on uint8 images (no augmentation)."""
    device = device or next(model.parameters()).device
    model.eval()
    losses, probs = [], []
    for i in range(0, len(data), batch_size):
        if should_stop():
            raise _Stopped()
        x = prepare_batch(data.images[i:i + batch_size], device, channels_last)
        with autocast_context(precision, device):
            logits = model(x)
        logits = logits.float().cpu()
        losses.append(F.cross_entropy(logits, data.labels[i:i + batch_size], reduction="sum"))
        probs.append(logits.softmax(1))
    return _eval_from(torch.stack(losses).sum() if losses else torch.tensor(0.0),
                      torch.cat(probs) if probs else torch.zeros(0, 1), data.labels)


def _eval_from(loss_sum: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> EvalResult:
    n = int(labels.shape[0])
    preds = probs.argmax(1) if n else torch.zeros(0, dtype=torch.int64)
    return EvalResult(loss=float(loss_sum) / max(n, 1), accuracy=float((preds == labels).float().mean()) if n else 0.0,
                      n=n, predictions=preds, probabilities=probs)


def prepare_batch(x_uint8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` images as the model's float input on ``device`` (channels_last if asked)."""
    x = to_float(x_uint8.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Trainer:
    """Trains ``model`` (whose ``requires_grad`` flags the regime has set) on uint8 split tensors."""

    def __init__(self, model: Classifier, cfg: TrainConfig, on_event: EventFn = no_events,
                 should_stop: StopFn = never_stop):
        self.cfg = cfg
        self.on_event = on_event
        self.should_stop = should_stop
        self.device = pick_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.channels_last = cfg.channels_last and self.device.type != "mps"
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        frozen_body = body_is_frozen(model)
        self.use_feature_cache = cfg.feature_cache == "on" or (cfg.feature_cache == "auto" and frozen_body)
        if self.use_feature_cache and not frozen_body:
            from core.errors import ConfigError

            raise ConfigError("The feature cache needs a frozen backbone (the 'transfer' regime).")
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.optimizer = make_adam([p for p in model.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay,
                                   self.device)
        self.setup = {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                      "feature_cache": self.use_feature_cache, "threads": torch.get_num_threads()}

    # -------------------------------------------------------------------------------------------- helpers

    def _check_stop(self) -> None:
        if self.should_stop():
            raise _Stopped()

    def _augmented(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = to_float(x_uint8)
        x = augment(x, self.generator, self.cfg.rotation_degrees, self.cfg.hflip)
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.inference_mode()
    def _features(self, images: torch.Tensor, augmented: bool, view: int, views: int, total_views: int) -> torch.Tensor:
        self.model.eval()
        bs = self.cfg.batch_size  # batch 64 was slower per image than 32 on the 2-core benchmark CPU
        out = []
        n_batches = math.ceil(len(images) / bs)
        for b, i in enumerate(range(0, len(images), bs)):
            self._check_stop()
            chunk = images[i:i + bs]
            x = self._augmented(chunk) if augmented else prepare_batch(chunk, self.device, self.channels_last)
            with autocast_context(self.precision, self.device):
                f = self.model.features(x)
            out.append(f.float().cpu())
            self.on_event(PhaseProgress("features", view * n_batches + b + 1, total_views * n_batches,
                                        f"computing backbone features (view {view + 1} of {views})"))
        return torch.cat(out)

    # ----------------------------------------------------------------------------------------------- fit

    def fit(self, train: SplitTensors, val: SplitTensors) -> FitResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        history: List[Dict] = []
        best = {"loss": math.inf, "acc": 0.0, "epoch": 0, "state": None}
        status = "finished"
        try:
            if self.use_feature_cache:
                views = min(cfg.feature_views, cfg.epochs)
                train_feats = [self._features(train.images, True, v, views, views + 1) for v in range(views)]
                val_feats = self._features(val.images, False, views, views, views + 1)
            batches = math.ceil(len(train) / cfg.batch_size)
            done_batches = 0
            for epoch in range(1, cfg.epochs + 1):
                t_epoch = time.perf_counter()
                perm = torch.randperm(len(train), generator=self.generator)
                set_train_mode(self.model)
                loss_sum, correct, seen = 0.0, 0, 0
                for b in range(batches):
                    self._check_stop()
                    t_batch = time.perf_counter()
                    idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    y = train.labels[idx].to(self.device)
                    if self.use_feature_cache:
                        logits = self.model.head(train_feats[(epoch - 1) % len(train_feats)][idx].to(self.device))
                    else:
                        x = self._augmented(train.images[idx])
                        with autocast_context(self.precision, self.device):
                            logits = self.model(x)
                    loss = F.cross_entropy(logits.float(), y)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    n, loss_value = int(y.shape[0]), loss.item()
                    loss_sum += loss_value * n
                    correct += int((logits.argmax(1) == y).sum())
                    seen += n
                    done_batches += 1
                    elapsed = time.perf_counter() - t_start
                    per_batch = elapsed / done_batches
                    self.on_event(BatchEnd(epoch=epoch, epochs=cfg.epochs, batch=b + 1, batches=batches,
                                           loss=loss_value, images_per_sec=n / max(time.perf_counter() - t_batch, 1e-9),
                                           eta_seconds=per_batch * (cfg.epochs * batches - done_batches)))
                if self.use_feature_cache:
                    ev = self._eval_head(val_feats, val.labels)
                else:
                    ev = evaluate_model(self.model, val, max(cfg.batch_size, 64), self.precision, self.device,
                                        self.channels_last, self.should_stop)
                seconds = time.perf_counter() - t_epoch
                is_best = ev.loss < best["loss"]
                if is_best:
                    best.update(loss=ev.loss, acc=ev.accuracy, epoch=epoch,
                                state={k: v.detach().clone() for k, v in self.model.state_dict().items()})
                event = EpochEnd(epoch=epoch, epochs=cfg.epochs, train_loss=loss_sum / seen, train_acc=correct / seen,
                                 val_loss=ev.loss, val_acc=ev.accuracy, lr=self.optimizer.param_groups[0]["lr"],
                                 seconds=seconds, images_per_sec=seen / seconds, is_best=is_best,
                                 best_epoch=best["epoch"], best_val_loss=best["loss"])
                history.append(event.metrics())
                self.on_event(event)
        except _Stopped:
            status = "interrupted"
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        return FitResult(status=status, epochs_done=len(history), best_epoch=best["epoch"],
                         best_val_loss=best["loss"], best_val_acc=best["acc"], history=history,
                         train_seconds=time.perf_counter() - t_start, setup=dict(self.setup))

    @torch.inference_mode()
    def _eval_head(self, feats: torch.Tensor, labels: torch.Tensor) -> EvalResult:
        self.model.eval()
        logits = self.model.head(feats.to(self.device)).float().cpu()
        return _eval_from(F.cross_entropy(logits, labels, reduction="sum"), logits.softmax(1), labels)

    def evaluate(self, data: SplitTensors) -> EvalResult:
        return evaluate_model(self.model, data, max(self.cfg.batch_size, 64), self.precision, self.device,
                              self.channels_last)
