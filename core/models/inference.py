"""Inference: a model's loss, accuracy and class probabilities on uint8 images, batch by batch.

Used by training (each epoch's validation and the final test), by evaluating a saved run, and by the speed
probe. Loops poll ``should_stop`` every batch and raise :class:`Stopped` when it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from core.data.splits import SplitTensors
from core.models.device import autocast_context, prepare_batch

StopFn = Callable[[], bool]


def never_stop() -> bool:
    return False


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    n: int
    predictions: torch.Tensor  # int64 (N,)
    probabilities: torch.Tensor  # float32 (N, C)


class Stopped(Exception):
    """Raised inside a loop when its ``should_stop`` says so."""


def eval_result(loss_sum: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> EvalResult:
    n = int(labels.shape[0])
    preds = probs.argmax(1) if n else torch.zeros(0, dtype=torch.int64)
    return EvalResult(
        loss=float(loss_sum) / max(n, 1),
        accuracy=float((preds == labels).float().mean()) if n else 0.0,
        n=n,
        predictions=preds,
        probabilities=probs,
    )


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    data: SplitTensors,
    batch_size: int = 64,
    precision: str = "fp32",
    device: Optional[torch.device] = None,
    channels_last: bool = False,
    should_stop: StopFn = never_stop,
) -> EvalResult:
    """Loss, accuracy and predictions of ``model`` on uint8 images (no augmentation)."""
    device = device or next(model.parameters()).device
    model.eval()
    return evaluate_batches(
        lambda i: model(prepare_batch(data.images[i : i + batch_size], device, channels_last)),
        len(data),
        batch_size,
        data.labels,
        precision,
        device,
        should_stop,
    )


def evaluate_batches(
    logits_of: Callable[[int], torch.Tensor],
    n: int,
    batch_size: int,
    labels: torch.Tensor,
    precision: str,
    device: torch.device,
    should_stop: StopFn = never_stop,
) -> EvalResult:
    """Loss, accuracy and probabilities from ``logits_of(i)``, the logits of the batch starting at ``i``."""
    losses, probs = [], []
    for i in range(0, n, batch_size):
        if should_stop():
            raise Stopped()
        with autocast_context(precision, device):
            logits = logits_of(i)
        logits = logits.float().cpu()
        losses.append(F.cross_entropy(logits, labels[i : i + batch_size], reduction="sum"))
        probs.append(logits.softmax(1))
    return eval_result(
        torch.stack(losses).sum() if losses else torch.tensor(0.0),
        torch.cat(probs) if probs else torch.zeros(0, 1),
        labels,
    )
