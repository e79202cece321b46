"""What this machine can do, in the words the app shows a teacher: device, threads, precision, weights."""

from __future__ import annotations

import platform
from typing import Dict

from core.data.download import flowers_available
from core.models.backbones import BACKBONES
from core.settings import Settings, usable_cpus

PREFERRED_BACKBONE = "resnet18"  # the course's model; the offline one stands in when its weights are missing


def nothing_downloaded(settings: Settings) -> bool:
    """Whether neither the real flowers nor ResNet18's ImageNet weights are on this machine (the sidebar then says
    that everything works offline). Read from disk at each call, never cached: a download shows at once."""
    return not flowers_available(settings.cache_dir) and BACKBONES[PREFERRED_BACKBONE].weights_source(settings) is None


def machine_state(settings: Settings) -> Dict:
    """The machine as Home shows it. Imports torch (seconds, the first time): Home calls it last, under a spinner."""
    # lazy: torch (which core.models.device imports) takes seconds to load; Home paints its text and dataset first
    import torch  # noqa: PLC0415 (lazy, as said above)

    from core.models.device import compute_setup, cpu_has_native_bf16, cpu_isa, cpu_model  # noqa: PLC0415 (as above)

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
