"""Device, threads and precision: the one place that decides where and how tensors compute.

bf16 autocast is used where the CPU does it natively (AVX-512 BF16 or AMX); elsewhere it is emulated and
about 10× *slower*, so ``auto`` means fp32 there. :func:`cpu_isa` names the CPU's best vector extension,
printed beside every benchmark figure.
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from typing import Optional

import torch

PRECISIONS = ("auto", "fp32", "bf16")


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
    return (f"{cpu_model()} | {cpu_isa()} | cores {os.cpu_count()} | threads {torch.get_num_threads()} | "
            f"torch {torch.__version__}")
