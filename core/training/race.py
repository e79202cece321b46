"""A race of the regimes planned to a time budget, end to end: probe, plan, train one after another.

:func:`plan_for` is what the Train page calls to show the plan before launch (it then queues the runs);
:func:`run_race` is ``python -m core race``: it trains the plan's runs in order in this process and returns
what was predicted next to what happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from core.data.decode import decode_image
from core.data.imagefolder import scan_image_folder
from core.data.sources import resolve_source
from core.data.splits import limit_per_class
from core.data.tensor_cache import is_cached
from core.errors import ConfigError
from core.models.inference import StopFn, never_stop
from core.models.regimes import REGIMES
from core.progress import ProgressFn, no_progress
from core.settings import Settings, usable_cpus
from core.training.config import RunConfig, new_group_id
from core.training.events import EventFn, no_events
from core.training.planner import (
    LADDERS,
    MAX_BUDGET_MINUTES,
    MIN_BUDGET_MINUTES,
    RacePlan,
    launch_configs,
    plan_race,
    race_configs,
)
from core.training.throughput import probe
from core.training.train import train_run

DECODE_PROBE_FILES = 12


def check_budget(minutes: float) -> float:
    """The budget in seconds; a clear error outside 1-30 minutes."""
    if not MIN_BUDGET_MINUTES <= minutes <= MAX_BUDGET_MINUTES:
        raise ConfigError(
            f"The time budget must be between {MIN_BUDGET_MINUTES} and {MAX_BUDGET_MINUTES} minutes, got {minutes:g}."
        )
    return minutes * 60.0


def decode_seconds_per_image(root: Path, files: Sequence[str]) -> float:
    """Decoding and resizing a few of the dataset's own files (JPEG decoding dominates, whatever the size)."""
    sample = list(files[:: max(1, len(files) // DECODE_PROBE_FILES)])[:DECODE_PROBE_FILES]
    workers = usable_cpus()  # the tensor cache decodes on every core at once
    t = time.perf_counter()
    for f in sample:
        try:
            decode_image(root / f, 224)
        except ValueError:
            pass
    return (time.perf_counter() - t) / max(len(sample), 1) / workers


@dataclass
class PlannedRace:
    plan: RacePlan
    configs: List[RunConfig]  # in the order they run
    root: Path
    elapsed_seconds: float  # spent before the first run: resolving the data, probing, planning


def plan_for(
    source: str,
    backbone: str,
    budget_seconds: float,
    settings: Settings,
    precision: str = "auto",
    regimes: Sequence[str] = tuple(REGIMES),
    seed: int = 0,
    group: str = "",
    preset: str = "",
    on_progress: ProgressFn = no_progress,
    started: Optional[float] = None,
) -> PlannedRace:
    """Probe this machine (cached), look at the data, and plan ``regimes`` to finish within the budget
    (counted from ``started``, a ``time.perf_counter()`` value, when given)."""
    started = time.perf_counter() if started is None else started
    root = resolve_source(source, settings, on_progress)
    listing = scan_image_folder(root)
    per_class = [listing.counts()[c] for c in listing.classes]
    tp = probe(backbone, settings, precision, on_progress)
    decoded, missing = [], []
    for key in {(r.img_size, r.limit_per_class) for ladder in LADDERS.values() for r in ladder}:
        files, _ = limit_per_class(listing, key[1], seed)
        (decoded if is_cached(root, files, key[0], settings.cache_dir) else missing).append(key)
    decode_s = decode_seconds_per_image(root, listing.files) if missing else 0.0
    elapsed = time.perf_counter() - started
    plan = plan_race(budget_seconds - elapsed, tp, per_class, regimes, decode_s, decoded)
    plan.budget_seconds = budget_seconds
    return PlannedRace(plan, race_configs(plan, source, seed, group, preset), root, elapsed)


def run_race(
    source: str,
    backbone: str,
    budget_minutes: float,
    settings: Settings,
    precision: str = "auto",
    on_event: EventFn = no_events,
    on_progress: ProgressFn = no_progress,
    on_run_end: Callable[[Dict], None] = lambda row: None,
    should_stop: StopFn = never_stop,
    baselines: Sequence[str] = (),
    augment: str = "flip-rotate",
) -> Dict:
    """Plan and train the four regimes one after another, then any ``baselines`` (unplanned, see
    :func:`~core.training.planner.with_baselines`), every run with ``augment``; ``on_run_end`` gets each finished
    run's row."""
    started = time.perf_counter()
    budget = check_budget(budget_minutes)
    planned = plan_for(
        source,
        backbone,
        budget,
        settings,
        precision,
        group=new_group_id(),
        preset=f"{budget_minutes:g} minutes",
        on_progress=on_progress,
        started=started,
    )
    configs = launch_configs(planned.configs, baselines, augment)
    rows = []
    for cfg in configs:
        if should_stop():
            break
        t = time.perf_counter()
        summary = train_run(cfg, settings, on_event=on_event, should_stop=should_stop)
        row = {
            "regime": cfg.model.regime,
            "run_dir": summary["run_dir"],
            "status": summary["status"],
            "test_acc": summary.get("test_acc"),
            "planned_seconds": cfg.plan.get("predicted_seconds"),  # None: a baseline, not planned
            "seconds": round(time.perf_counter() - t, 1),
        }
        rows.append(row)
        on_run_end(row)
    return {
        "budget_seconds": budget,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "predicted_seconds": round(planned.elapsed_seconds + planned.plan.predicted_seconds, 1),
        "setup_seconds": round(planned.elapsed_seconds, 1),
        "backbone": backbone,
        "precision": planned.plan.precision,
        "runs": rows,
    }
