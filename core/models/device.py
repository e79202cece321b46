"""Device, threads and precision: the one place that decides where and how tensors compute.

bf16 autocast is used where the CPU does it natively (AVX-512 BF16 or AMX); elsewhere it is emulated and
about 10× *slower*, so ``auto`` means fp32 there. :func:`cpu_isa` names the CPU's best vector extension,
printed beside every benchmark figure.
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import torch
from torch import nn

from core.data.decode import to_float
from core.errors import ConfigError
from core.settings import usable_cpus

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; a :class:`ConfigError` saying so otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"Precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got '{precision}'.")
    return precision


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
    """ "bf16" or "fp32". ``auto`` picks bf16 where the hardware does it natively."""
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


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``x`` on ``device``; a 4-D batch in channels_last memory order if asked."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def prepare_batch(x_uint8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` images as the model's float input in [0, 1] on ``device``."""
    return to_device(to_float(x_uint8.to(device, non_blocking=True)), device, channels_last)


@dataclass(frozen=True)
class Compute:
    """Where and how a model computes: the device, ``"fp32"`` or ``"bf16"``, and the memory order."""

    device: torch.device
    precision: str
    channels_last: bool

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` moved to the device (in channels_last order when that is used)."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def autocast(self):
        return autocast_context(self.precision, self.device)


def compute_setup(device: str = "auto", precision: str = "auto", channels_last: bool = True) -> Compute:
    """The one place that turns the ``device`` / ``precision`` settings into a :class:`Compute`: the best
    device, bf16 only where it is native, channels_last except on Apple's MPS (where it is slower)."""
    dev = pick_device(device)
    return Compute(dev, resolve_precision(check_precision(precision), dev), channels_last and dev.type != "mps")


def configure_threads(num_threads: Optional[int]) -> int:
    n = num_threads or usable_cpus()
    torch.set_num_threads(n)
    return n


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_isa() -> str:
    """The CPU's best vector extension for this work: "amx", "avx512_bf16", "avx512", "avx2" or the machine."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    words = set(flags.split())
    for isa, flag in (("amx", "amx_tile"), ("avx512_bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in words:
            return isa
    return platform.machine()


def machine_id() -> str:
    """What a speed measurement depends on: CPU, core count, threads, library versions."""
    return (
        f"{cpu_model()} | {cpu_isa()} | cores {usable_cpus()} | threads {torch.get_num_threads()} | "
        f"torch {torch.__version__}"
    )
