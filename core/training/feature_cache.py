"""Frozen-prefix activations: computed once per view of the data, kept compactly, shared between runs.

A regime's frozen prefix (:class:`core.models.regimes.RegimeSplit`) gives the same output for the same input every
epoch, so the engine runs it once per **view** — view 0 the plain images, view ``v >= 1`` a seeded augmentation of
every image as the run chooses it (:mod:`core.training.augment`; with ``off`` there is only the plain view) — and
once for val and test; the epochs then train the suffix on those outputs.

* **Compact.** Outputs are kept in fp16 (bf16 if a value would overflow fp16): half the memory of fp32, and
  the accuracy does not move (BENCHMARKS.md, "Frozen-prefix cache").
* **Within a memory budget.** :func:`cache_budget` is a share of the memory available now; a run whose
  views would not fit trains uncached instead, and says so.
* **Shared.** :data:`STORE` keeps the latest outputs of this process, keyed by the exact images, the view,
  the runtime and a fingerprint of the frozen stages up to the output. A later run that finds outputs at or
  before its own cut point continues from there: in a race, ``transfer`` runs only the few frozen stages
  after ``finetune``'s cut instead of the whole backbone again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from core.data.decode import to_float
from core.models.runtime import hash_module
from core.training.augment import Augmentation, Params, params_slice

RAM_SHARE = 0.5  # of the memory available when a run starts
KEEP_SECONDS = 15 * 60  # unused outputs are dropped after this long
FP16_MAX = 65504.0


def available_memory() -> int:
    """Bytes of memory available to new allocations now (Linux MemAvailable; psutil or sysconf elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # noqa: PLC0415 (optional)

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def cache_budget() -> int:
    """How many bytes a run may spend on cached activations."""
    return int(RAM_SHARE * available_memory())


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@dataclass(frozen=True)
class View:
    """One pass over a split: plain (``index`` 0) or a seeded augmentation of every image."""

    index: int
    seed: int = 0
    rotation_degrees: float = 10.0
    hflip: bool = True
    augment: str = "flip-rotate"

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(self.augment, self.rotation_degrees, self.hflip)

    @property
    def augmented(self) -> bool:
        return self.index > 0 and self.augmentation.active

    @property
    def key(self) -> Tuple:
        # flip-rotate keeps the key it had before the choice existed (one store, one meaning)
        aug = self.augmentation
        extra = () if aug.setting == "flip-rotate" else (aug.setting,)
        return (self.index, self.seed, self.rotation_degrees, self.hflip, *extra) if self.augmented else (0,)

    def describe(self) -> str:
        return self.augmentation.describe() if self.augmented else "plain"

    def params(self, n: int, height: int, width: int) -> Params:
        """Per-image augmentation of the whole view, drawn up front so batching does not change it."""
        g = torch.Generator().manual_seed((self.seed << 16) + self.index)
        return self.augmentation.draw(n, height, width, g)


def compact(t: torch.Tensor) -> torch.Tensor:
    """fp16 where every value fits, bf16 otherwise."""
    return t.half() if float(t.abs().max()) < FP16_MAX else t.bfloat16()


def stage_fingerprints(stages: List[nn.Module]) -> List[str]:
    """``out[i]`` identifies what ``stages[:i+1]`` compute (layouts, weights, buffers)."""
    h, out = hashlib.sha1(), []
    for m in stages:
        hash_module(h, m)
        out.append(h.copy().hexdigest()[:20])
    return out


def run_view(
    images: torch.Tensor,
    view: View,
    run: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> torch.Tensor:
    """``run`` over uint8 ``images`` as this view sees them, in batches; compact outputs, in order."""
    params = view.params(len(images), images.shape[-2], images.shape[-1]) if view.augmented else None
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i : i + batch_size])
        if params is not None:
            x = view.augmentation.apply(x, params_slice(params, i, i + batch_size))
        out.append(compact(run(x)))
        on_batch(len(x))
    return torch.cat(out) if out else torch.zeros(0)


def run_tensor(
    x: torch.Tensor,
    run: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> torch.Tensor:
    """``run`` over stored activations, in batches; compact outputs."""
    out = []
    for i in range(0, len(x), batch_size):
        out.append(compact(run(x[i : i + batch_size].float())))
        on_batch(min(batch_size, len(x) - i))
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class _Entry:
    base: Tuple
    stage: int
    fingerprint: str
    tensor: torch.Tensor
    used: float

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.tensor.element_size()


class ActivationStore:
    """This process's latest frozen outputs, for a later run to continue from (see the module docstring)."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS):
        self._entries: Dict[Tuple, _Entry] = {}
        self._lock = threading.Lock()
        self.keep_seconds = keep_seconds

    def _expire(self) -> None:
        now = time.monotonic()
        for k in [k for k, e in self._entries.items() if now - e.used > self.keep_seconds]:
            del self._entries[k]

    def lookup(self, base: Tuple, fingerprints: List[str]) -> Optional[Tuple[int, torch.Tensor]]:
        """The deepest stored ``(stage, outputs)`` for ``base`` whose stages match ``fingerprints``."""
        with self._lock:
            self._expire()
            hits = [
                e
                for e in self._entries.values()
                if e.base == base and e.stage < len(fingerprints) and fingerprints[e.stage] == e.fingerprint
            ]
            if not hits:
                return None
            best = max(hits, key=lambda e: e.stage)
            best.used = time.monotonic()
            return best.stage, best.tensor

    def put(self, base: Tuple, stage: int, fingerprint: str, tensor: torch.Tensor) -> None:
        with self._lock:
            self._expire()
            self._entries[(base, stage, fingerprint)] = _Entry(base, stage, fingerprint, tensor, time.monotonic())
            held = sum(e.nbytes for e in self._entries.values())
            cap = RAM_SHARE * (available_memory() + held)  # what it holds is no longer "available"
            for k in sorted(self._entries, key=lambda k: self._entries[k].used):
                if held <= cap or len(self._entries) == 1:
                    break
                held -= self._entries.pop(k).nbytes

    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


STORE = ActivationStore()
