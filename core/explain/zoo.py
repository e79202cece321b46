"""The backbone zoo: every backbone the app can use, one row each — its size, its published ImageNet accuracy,
its speed measured on this machine, and the best flowers accuracy each regime reached with it in the run store.

* ``parameters``: counted from the built model with its ImageNet head (as published counts are), once per process.
* ``weights``: where its ImageNet weights come from on this machine, and ``weights_mb`` the file's size in MiB
  (2**20 bytes, as torchvision's ``_file_size``); both None when the weights are not on this machine (ResNet18
  without its file). Such a backbone keeps its row — size, published accuracy, latency — so the page can say
  "weights not on this machine".
* ``latency``: taken only when asked (``measure=True``) and cached per machine in ``<cache_dir>/zoo/latency.json``,
  keyed by :func:`~core.models.device.machine_id` (CPU, cores, threads, torch version), backbone, precision and
  size. How: on the CPU, fp32 PyTorch eager under ``torch.inference_mode``, channels_last as the app computes,
  random input of :data:`LATENCY_PX` px for every backbone (the same work, whatever its ImageNet size); ms per
  batch at each of :data:`LATENCY_BATCHES` (``batch1_ms``, ``batch32_ms``), the median of :data:`REPEATS` timed
  calls after :data:`WARMUP` untimed ones, and ``images_per_s`` at the largest batch. The model is built with
  random weights: the same arithmetic as the ImageNet ones, so the same speed, and a backbone whose weights are
  absent is measured too. ``cpu_share`` is the share of its threads' time the measurement got on the cores
  (process CPU time / wall time / threads, the lowest over the batches): about 1 on idle cores, lower when
  other work competed, and then the figures are slower than the backbone is (delete the cache file to measure
  again).
* ``best``: for each regime of :data:`~core.models.regimes.REGIMES`, the best test accuracy among *finished* runs
  of that backbone on the flowers dataset (any seed, size or number of epochs), None without one. A run is on the
  flowers dataset when its dataset — the Compare table's column, :func:`~core.runs.compare.dataset_name` of its
  config's ``data.source`` — is one of :data:`FLOWERS_DATASETS`: ``flowers`` (the app's download) or
  ``flower_photos`` (the same archive's folder given as a path, as ``--data ../shared/data/flower_photos``).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from core.files import strict_json, write_json_atomic
from core.models.backbones import BACKBONES, BackboneSpec, get_backbone
from core.models.device import compute_setup, cpu_isa, machine_id, to_device
from core.models.regimes import REGIMES
from core.progress import ProgressFn, no_progress
from core.runs.compare import runs_table
from core.runs.store import RunStore
from core.settings import Settings

LATENCY_PX = 224
LATENCY_BATCHES = (1, 32)
WARMUP, REPEATS = 2, 5
PRECISION = "fp32"
FLOWERS_DATASETS = ("flowers", "flower_photos")
MEASURING = "measuring CPU latency"  # the progress message while measuring


@dataclass(frozen=True)
class ZooRow:
    name: str
    display: str
    parameters: int
    weights: Optional[str]  # where the ImageNet weights come from on this machine; None: not on this machine
    weights_mb: Optional[float]
    imagenet_px: int
    imagenet_top1: float  # published, %
    imagenet_top1_source: str
    offline: bool
    latency: Optional[Dict[str, Any]]  # see the module docstring; None until measured on this machine
    best: Dict[str, Optional[float]]  # regime -> best flowers test accuracy (0-1), None without a finished run

    def as_json(self) -> Dict[str, Any]:
        """The row as a JSON-ready dict (strict JSON: no NaN)."""
        return strict_json(asdict(self))


@cache
def parameter_count(backbone: str) -> int:
    """Parameters of ``backbone`` with its ImageNet head, counted from the built model (the same on every machine)."""
    return sum(p.numel() for p in get_backbone(backbone).build().parameters())


def latency_cache_path(settings: Settings) -> Path:
    return settings.cache_dir / "zoo" / "latency.json"


def latency_key(backbone: str) -> str:
    return f"{machine_id()} | {backbone} | {PRECISION} | {LATENCY_PX} px"


def read_latency_cache(settings: Settings) -> Dict[str, Dict]:
    """Every latency measured so far (any machine), by :func:`latency_key`; {} when none or unreadable (it is
    rebuilt by measuring again)."""
    try:
        cached = json.loads(latency_cache_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def measure_latency(backbone: str) -> Dict[str, Any]:
    """Time ``backbone`` on this CPU as the module docstring says; the figures with what they depend on."""
    compute = compute_setup("cpu", PRECISION)
    model = compute.place(get_backbone(backbone).build().eval())
    ms, shares = {}, []
    with torch.inference_mode():
        for batch in LATENCY_BATCHES:
            x = to_device(torch.rand(batch, 3, LATENCY_PX, LATENCY_PX), compute.device, compute.channels_last)
            for _ in range(WARMUP):
                model(x)
            times, cpu = [], time.process_time()
            for _ in range(REPEATS):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
            shares.append((time.process_time() - cpu) / (sum(times) * torch.get_num_threads()))
            ms[batch] = statistics.median(times) * 1000
    largest = max(LATENCY_BATCHES)
    return {
        **{f"batch{b}_ms": round(v, 2) for b, v in ms.items()},
        "images_per_s": round(largest * 1000 / ms[largest], 1),
        "px": LATENCY_PX,
        "precision": PRECISION,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "isa": cpu_isa(),
        "machine": machine_id(),
        "repeats": REPEATS,
        "cpu_share": round(min(shares), 2),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _save_latency(settings: Settings, key: str, latency: Dict) -> None:
    # re-read first: another process may have measured other backbones meanwhile
    write_json_atomic(latency_cache_path(settings), {**read_latency_cache(settings), key: latency})


def best_test_accuracies(
    settings: Settings, datasets: Sequence[str] = FLOWERS_DATASETS
) -> Dict[Tuple[str, str], float]:
    """(backbone, regime) -> the best test accuracy among the finished runs on one of ``datasets``."""
    df = runs_table(RunStore(settings.runs_dir).list_runs())
    done = df[(df["status"] == "finished") & df["dataset"].isin(list(datasets)) & df["test acc"].notna()]
    return {key: float(acc) for key, acc in done.groupby(["backbone", "regime"])["test acc"].max().items()}


def _weights_mb(spec: BackboneSpec, settings: Settings) -> Optional[float]:
    path = spec.weights_file(settings)
    return round(path.stat().st_size / 2**20, 2) if path is not None else None


def zoo_table(
    settings: Settings,
    measure: bool = False,
    on_progress: ProgressFn = no_progress,
    datasets: Sequence[str] = FLOWERS_DATASETS,
) -> List[ZooRow]:
    """One :class:`ZooRow` per registry backbone, in registry order. ``measure=False`` never measures (latency
    from this machine's cache, else None); ``measure=True`` measures the backbones not yet cached for this
    machine (seconds each), saving each as it is done. ``datasets``: which runs' accuracies count (flowers)."""
    cached = read_latency_cache(settings)
    if measure:
        todo = [name for name in BACKBONES if latency_key(name) not in cached]
        for i, name in enumerate(todo):
            on_progress(i, len(todo), MEASURING)
            cached[latency_key(name)] = latency = measure_latency(name)
            _save_latency(settings, latency_key(name), latency)
        on_progress(len(todo), len(todo), MEASURING)
    best = best_test_accuracies(settings, datasets)
    return [
        ZooRow(
            name=name,
            display=spec.display,
            parameters=parameter_count(name),
            weights=spec.weights_source(settings),
            weights_mb=_weights_mb(spec, settings),
            imagenet_px=spec.imagenet_px,
            imagenet_top1=spec.imagenet_top1,
            imagenet_top1_source=spec.imagenet_top1_source,
            offline=spec.offline,
            latency=cached.get(latency_key(name)),
            best={regime: best.get((name, regime)) for regime in REGIMES},
        )
        for name, spec in BACKBONES.items()
    ]
