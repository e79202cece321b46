"""What this machine can do, in the words the app shows a teacher: device, threads, precision, weights."""

from __future__ import annotations

import platform
from typing import Dict

import torch

from core.models.backbones import BACKBONES
from core.models.device import compute_setup, cpu_has_native_bf16, cpu_isa, cpu_model
from core.settings import Settings, usable_cpus


def machine_state(settings: Settings) -> Dict:
    compute = compute_setup()
    return {
        "device": str(compute.device),
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "cpu_cores": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "precision": compute.precision,
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "imagenet_weights": {name: spec.weights_source(settings) for name, spec in BACKBONES.items()},
    }
