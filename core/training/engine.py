"""The training engine: one loop for every regime, reporting through events, cancellable every batch.

The engine consumes a :class:`~core.models.regimes.RegimeSplit`: a frozen prefix and a trainable suffix. Each
regime pays only for what it trains (each fast path measured in BENCHMARKS.md, each can be switched off in
:class:`~core.training.config.TrainConfig`):

* **Frozen-prefix cache** — when the regime has frozen layers (``transfer``: the whole body; ``finetune``:
  everything before its first trainable block), their output for a few views of the training set (the plain
  images, then seeded augmented copies) and for val is computed once (:mod:`core.training.feature_cache`), and
  the epochs run forward and backward through the suffix only, cycling through the views. It is skipped,
  and the setup says why, when it would not fit in memory.
* **The fastest frozen pass** — those passes are inference, run by ONNX Runtime where it is measured faster
  here (:mod:`core.models.runtime`).
* **bf16 autocast + channels_last** on CPUs with native bf16 (AVX-512 BF16 / AMX), fp32 otherwise.
* **Progressive resizing** for the regimes that backpropagate through everything: the first epochs at a
  smaller ``train_img_size``, the last ones at the full size (FixRes).
* Images are uint8 tensors decoded once (:mod:`core.data.tensor_cache`); augmentation runs batched on tensors.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from core.data.decode import to_float
from core.data.splits import SplitTensors
from core.errors import ConfigError, TrainingDiverged
from core.models.classifier import Classifier
from core.models.device import autocast_context, compute_setup, prepare_batch, to_device
from core.models.inference import EvalResult, StopFn, Stopped, evaluate_batches, evaluate_model, never_stop
from core.models.regimes import RegimeSplit
from core.models.runtime import FrozenPass, frozen_pass
from core.training.augment import Augmentation, resize_batch
from core.training.config import TrainConfig
from core.training.events import BatchEnd, EpochEnd, EventFn, PhaseProgress, no_events
from core.training.feature_cache import STORE, View, cache_budget, fmt_bytes, run_tensor, run_view, stage_fingerprints


@dataclass
class FitResult:
    status: str  # "finished" or "interrupted"
    epochs_done: int
    best_epoch: int
    best_val_loss: float
    best_val_acc: float
    history: List[Dict] = field(default_factory=list)
    train_seconds: float = 0.0
    setup: Dict = field(default_factory=dict)  # device, precision, cache, runtime, threads, notes


def make_optimizer(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Adam itself when ``weight_decay`` is 0, as in the notebook), using the fused single-kernel
    update where this torch/device has it (same maths, ~6% faster ResNet18 training steps on the 2-core
    benchmark CPU)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class Trainer:
    """Trains the suffix of ``split`` (a regime applied to ``model``) on uint8 split tensors."""

    def __init__(
        self,
        model: Classifier,
        split: RegimeSplit,
        cfg: TrainConfig,
        on_event: EventFn = no_events,
        should_stop: StopFn = never_stop,
        cache_dir: Optional[Path] = None,
    ):
        self.cfg, self.split = cfg, split
        self.on_event = on_event
        self.should_stop = should_stop
        self.cache_dir = cache_dir
        compute = compute_setup(cfg.device, cfg.precision, cfg.channels_last)
        self.device, self.precision, self.channels_last = compute.device, compute.precision, compute.channels_last
        self.model = compute.place(model)
        if cfg.feature_cache == "on" and not split.caches:
            raise ConfigError(
                f"The feature cache needs frozen layers to cache; the '{split.regime}' regime trains "
                f"every layer. Use it with 'transfer' or 'finetune', or set it to auto."
            )
        self.use_feature_cache = cfg.feature_cache != "off" and split.caches
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.augmentation = Augmentation(cfg.augment, cfg.rotation_degrees, cfg.hflip)
        self.optimizer = make_optimizer(
            [p for p in model.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay, self.device
        )
        self._frozen: Optional[FrozenPass] = None
        self._fingerprints: Optional[List[str]] = None
        self.notes: List[str] = []
        self.best: Dict = {"state": None}
        self.setup = {
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "cache_point": split.cache_point if split.caches else None,
            "feature_cache": self.use_feature_cache,
            "threads": torch.get_num_threads(),
            "schedule": cfg.schedule,
            "runtime": "torch (no frozen layers)"
            if not split.caches
            else "none needed: the frozen layers' outputs were already cached",
            "notes": self.notes,
        }

    # -------------------------------------------------------------------------------------------- helpers

    def _check_finite(self, loss: float, which: str, epoch: int, batch: Optional[int] = None) -> None:
        """Raise :class:`TrainingDiverged` when ``loss`` is NaN or infinite: every later step would be too."""
        if math.isfinite(loss):
            return
        where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
        lr = self.optimizer.param_groups[0]["lr"]
        raise TrainingDiverged(
            f"The {which} loss became {loss} at {where}: training diverged, and the epochs after it would learn "
            f"nothing. The learning rate ({lr:g}) is too high for this regime; try one ten times smaller "
            f"(the course notebook uses 1e-4). The epochs before it are kept in the run folder."
        )

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Stopped()

    def _augmented(self, x_uint8: torch.Tensor, size: Optional[int] = None) -> torch.Tensor:
        x = self.augmentation(to_float(x_uint8), self.generator)
        if size is not None:
            x = resize_batch(x, size)
        return to_device(x, self.device, self.channels_last)

    def _stoppable(self, run: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def checked(x: torch.Tensor) -> torch.Tensor:
            self._check_stop()
            return run(x)

        return checked

    def _frozen_pass(self, example_uint8: torch.Tensor) -> FrozenPass:
        """The runtime that runs the frozen prefix, chosen at first use (it needs an example batch)."""
        if self._frozen is None:
            self._frozen = frozen_pass(
                self.split.prefix,
                to_float(example_uint8[:8]),
                self.precision,
                self.device,
                self.channels_last,
                self.cfg.runtime,
                self.cache_dir,
            )
            self.setup["runtime"] = self._frozen.description
        return self._frozen

    def _run_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen prefix on a float batch, without gradients (uncached path)."""
        if self.split.caches and self._frozen is not None:
            return to_device(self._frozen(x), self.device, self.channels_last)
        with torch.no_grad(), autocast_context(self.precision, self.device):
            return self.split.prefix(x)

    def _epoch_size(self, epoch: int, full: int) -> Optional[int]:
        small = self.cfg.train_img_size
        if small is None or small == full or epoch > self.cfg.epochs - self.cfg.full_size_epochs:
            return None
        return small

    def _views(self) -> List[View]:
        n = min(self.cfg.feature_views, self.cfg.epochs) if self.augmentation.active else 1  # off: the plain view
        return [View(v, self.cfg.seed, self.cfg.rotation_degrees, self.cfg.hflip, self.cfg.augment) for v in range(n)]

    def _plan_cache(self, train: SplitTensors, val: SplitTensors) -> bool:
        """Whether the cached views fit in memory (estimated from one image's output); notes why not."""
        self.split.eval_mode()  # frozen BatchNorm must neither see one image as a batch nor update its statistics
        with torch.no_grad(), autocast_context(self.precision, self.device):
            out = self.split.prefix(prepare_batch(train.images[:1], self.device, self.channels_last))
        per_image = out[0].numel() * 2  # fp16
        views = len(self._views())
        need = per_image * (len(train) * views + len(val))
        budget = cache_budget()
        self.setup.update(cache_shape=list(out.shape[1:]), cache_views=views, cache_mb_estimate=round(need / 1e6, 1))
        if need <= budget:
            return True
        self.notes.append(
            f"The frozen-layer cache would need {fmt_bytes(need)} for {views} view(s) of "
            f"{len(train):,} images, more than its budget of {fmt_bytes(budget)} (half the free "
            f"memory), so this run computes the frozen layers every batch instead."
        )
        self.setup["feature_cache"] = False
        return False

    def _activations(self, data: SplitTensors, view: View, progress: Callable[[int], None]) -> torch.Tensor:
        """The frozen prefix's outputs for ``data`` as ``view`` sees it: from the shared store, continuing
        from a shallower stored stage, or computed."""
        if self._fingerprints is None:
            self._fingerprints = stage_fingerprints(list(self.split.prefix))
        last = self.split.cut - 1
        # ONNX Runtime and PyTorch at fp32 agree to ~1e-5: outputs are shared by the precision the runs asked for
        base = (data.key, view.key, self.precision) if data.key else None
        hit = STORE.lookup(base, self._fingerprints) if base else None
        bs = max(self.cfg.batch_size, 32)
        if hit is not None and hit[0] == last:
            progress(len(data))
            self.setup["cache_shared"] = self.split.cache_point
            return hit[1]
        if hit is not None:  # continue from a shallower cut (e.g. finetune's) through the remaining frozen stages
            stage, stored = hit
            rest = torch.nn.Sequential(*list(self.split.prefix)[stage + 1 :])
            run = frozen_pass(
                rest,
                stored[:8].float(),
                self.precision,
                self.device,
                self.channels_last,
                self.cfg.runtime,
                self.cache_dir,
            )
            self.setup["cache_shared"] = self.split.stage_names[stage]
            self.setup["runtime"] = (
                f"the stages after {self.split.stage_names[stage]}'s cached outputs: {run.description}"
            )
            out = run_tensor(stored, self._stoppable(run), bs, progress)
        else:
            out = run_view(data.images, view, self._stoppable(self._frozen_pass(data.images)), bs, progress)
        if base is not None:
            STORE.put(base, last, self._fingerprints[last], out)
        return out

    def _cache_views(self, train: SplitTensors, val: SplitTensors):
        views = self._views()
        total = len(train) * len(views) + len(val)
        done = [0]

        def progress_for(message: str):
            def progress(n: int) -> None:
                done[0] += n
                self.on_event(PhaseProgress("features", done[0], total, message))

            return progress

        train_acts = [
            self._activations(
                train,
                v,
                progress_for(f"computing the frozen layers once (view {v.index + 1} of {len(views)}: {v.describe()})"),
            )
            for v in views
        ]
        val_acts = self._activations(val, View(0), progress_for("computing the frozen layers once (validation)"))
        return train_acts, val_acts

    def _uncached_eval(self, data: SplitTensors) -> EvalResult:
        bs = max(self.cfg.batch_size, 64)
        if not self.split.caches:
            return evaluate_model(
                self.model, data, bs, self.precision, self.device, self.channels_last, self.should_stop
            )
        self.split.eval_mode()
        with torch.inference_mode():
            return evaluate_batches(
                lambda i: self.split.suffix(
                    self._run_prefix(prepare_batch(data.images[i : i + bs], self.device, self.channels_last))
                ),
                len(data),
                bs,
                data.labels,
                self.precision,
                self.device,
                self.should_stop,
            )

    def _suffix_eval(self, acts: torch.Tensor, labels: torch.Tensor) -> EvalResult:
        bs = max(self.cfg.batch_size, 64)
        self.split.eval_mode()
        with torch.inference_mode():
            return evaluate_batches(
                lambda i: self.split.suffix(to_device(acts[i : i + bs].float(), self.device, self.channels_last)),
                len(acts),
                bs,
                labels,
                self.precision,
                self.device,
                self.should_stop,
            )

    # ----------------------------------------------------------------------------------------------- fit

    def fit(self, train: SplitTensors, val: SplitTensors) -> FitResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        history: List[Dict] = []
        self.best = best = {"loss": math.inf, "acc": 0.0, "epoch": 0, "state": None}  # state: the best epoch's weights
        status = "finished"
        full_size = int(train.images.shape[-1])
        batches = math.ceil(len(train) / cfg.batch_size)
        scheduler = (
            torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, cfg.lr, total_steps=cfg.epochs * batches, pct_start=0.15
            )
            if cfg.schedule == "onecycle"
            else None
        )
        try:
            if self.use_feature_cache:
                self.use_feature_cache = self._plan_cache(train, val)
            if self.use_feature_cache:
                train_acts, val_acts = self._cache_views(train, val)
            elif self.split.caches:  # the frozen prefix runs every batch, in the fastest runtime
                self._frozen_pass(train.images)
            done_batches = 0
            for epoch in range(1, cfg.epochs + 1):
                t_epoch = time.perf_counter()
                size = self._epoch_size(epoch, full_size)
                perm = torch.randperm(len(train), generator=self.generator)
                self.split.train_mode()
                loss_sum, correct, seen = 0.0, 0, 0
                for b in range(batches):
                    self._check_stop()
                    t_batch = time.perf_counter()
                    idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                    y = train.labels[idx].to(self.device)
                    if self.use_feature_cache:
                        h = to_device(
                            train_acts[(epoch - 1) % len(train_acts)][idx].float(), self.device, self.channels_last
                        )
                    else:
                        h = self._run_prefix(self._augmented(train.images[idx], size))
                    with autocast_context(self.precision, self.device):
                        logits = self.split.suffix(h)
                    loss = F.cross_entropy(logits.float(), y)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    n, loss_value = int(y.shape[0]), loss.item()
                    self._check_finite(loss_value, "training", epoch, b + 1)
                    loss_sum += loss_value * n
                    correct += int((logits.argmax(1) == y).sum())
                    seen += n
                    done_batches += 1
                    per_batch = (time.perf_counter() - t_start) / done_batches
                    self.on_event(
                        BatchEnd(
                            epoch=epoch,
                            epochs=cfg.epochs,
                            batch=b + 1,
                            batches=batches,
                            loss=loss_value,
                            images_per_sec=n / max(time.perf_counter() - t_batch, 1e-9),
                            eta_seconds=per_batch * (cfg.epochs * batches - done_batches),
                        )
                    )
                lr = self.optimizer.param_groups[0]["lr"]
                ev = self._suffix_eval(val_acts, val.labels) if self.use_feature_cache else self._uncached_eval(val)
                seconds = time.perf_counter() - t_epoch
                self._check_finite(ev.loss, "validation", epoch)
                is_best = ev.loss < best["loss"]
                if is_best:
                    best.update(
                        loss=ev.loss,
                        acc=ev.accuracy,
                        epoch=epoch,
                        state={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                    )
                event = EpochEnd(
                    epoch=epoch,
                    epochs=cfg.epochs,
                    train_loss=loss_sum / seen,
                    train_acc=correct / seen,
                    val_loss=ev.loss,
                    val_acc=ev.accuracy,
                    lr=lr,
                    seconds=seconds,
                    images_per_sec=seen / seconds,
                    is_best=is_best,
                    best_epoch=best["epoch"],
                    best_val_loss=best["loss"],
                    img_size=size or full_size,
                )
                history.append(event.metrics())
                self.on_event(event)
        except Stopped:
            status = "interrupted"
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        return FitResult(
            status=status,
            epochs_done=len(history),
            best_epoch=best["epoch"],
            best_val_loss=best["loss"],
            best_val_acc=best["acc"],
            history=history,
            train_seconds=time.perf_counter() - t_start,
            setup=dict(self.setup),
        )

    def evaluate(self, data: SplitTensors) -> EvalResult:
        """The model on ``data`` (plain images); through the cached frozen prefix when this run caches."""
        if self.use_feature_cache:
            acts = self._activations(data, View(0), lambda n: None)
            return self._suffix_eval(acts, data.labels)
        return self._uncached_eval(data)
