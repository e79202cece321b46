"""Look inside's heat maps: one CAM for each of 4 runs at 224 px, as the page makes them (target: ≤ 2 s on 2 cores).

Four runs of EfficientNet-Lite0 (scratch, transfer, finetune, full) are trained into a temporary run store (1
epoch at ``--train-px`` on ``--data``, at most ``--limit-per-class`` photos a class: their weights, not their
accuracy, matter here), or taken from ``--runs-dir`` when it already holds one of each. Their models are loaded
once, as the page keeps them, then :func:`core.explain.cam.explain_photo` explains one photo with each, at
``--px`` (224) and at the runs' own size. Medians of ``--repeats`` rounds of all four; the first call of the
process (the ``grad-cam`` package's import) and each model's first call are reported apart.

Rows, every one with the CPU's ISA and torch's threads, on the fp32 path (the precision of the pass is printed):

* Grad-CAM and Grad-CAM++ with the autograd graph cut at the target layer (:data:`core.explain.cam.CUT_AT_LAYER`,
  the code path), and Grad-CAM with the graph from the input (pytorch_grad_cam's own examples), for the saving;
* Score-CAM: its measured estimate at ``--px`` (what decides whether it is refused), then actual runs at the
  runs' own size with Score-CAM batch sizes 16, 32, 64 and 128 (``--scorecam-repeats`` rounds), and with
  ``--scorecam-at-px`` one forced run at ``--px`` against its estimate;
* the feature maps and the filter grid of one run at ``--px`` (the page's section 3).

    python benchmarks/bench_explain.py                       # the sample (or the real flowers when present)
    python benchmarks/bench_explain.py --data ../shared/data/flower_photos --scorecam-at-px
    python benchmarks/bench_explain.py --runs-dir /tmp/explain-runs      # keeps the 4 runs, reuses them after
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")  # Score-CAM's own progress bar

import torch  # noqa: E402

from benchmarks.bench_training import emit, machine, table  # noqa: E402
from core.data.imagefolder import scan_image_folder  # noqa: E402
from core.data.sources import resolve_source  # noqa: E402
from core.errors import ConfigError  # noqa: E402
from core.explain import cam  # noqa: E402
from core.explain.features import feature_maps, first_layer_filters  # noqa: E402
from core.models.device import configure_threads, cpu_isa  # noqa: E402
from core.models.regimes import REGIMES  # noqa: E402
from core.runs.evaluate import load_run_model, run_classes_and_size  # noqa: E402
from core.runs.predictions import load_photo  # noqa: E402
from core.runs.store import RunRecord, RunStore  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from core.training.train import train_run  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"
LITE0 = "efficientnet_lite0"
TARGET_SECONDS = 2.0


def lscpu_isa() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "?"
    return ",".join(f for f in ("avx512_bf16", "avx2") if f in out.split()) or "?"


def runs_for(store: RunStore, data: str, args, settings: Settings) -> List[RunRecord]:
    """One finished Lite0 run per regime from ``store``; the missing ones trained first."""
    have = {}
    for r in store.list_runs():
        model = r.config.get("model", {})
        if r.status == "finished" and r.has_checkpoint and model.get("backbone") == LITE0:
            have.setdefault(model.get("regime"), r)
    for regime in REGIMES:
        if regime not in have:
            t = time.perf_counter()
            cfg = RunConfig(
                data=DataConfig(source=data, img_size=args.train_px, limit_per_class=args.limit_per_class),
                model=ModelConfig(backbone=LITE0, regime=regime),
                train=TrainConfig(epochs=1, lr=1e-3, batch_size=32),
            )
            s = train_run(cfg, settings)
            print(f"# trained {s['run_id']} in {time.perf_counter() - t:.1f} s", flush=True)
            have[regime] = store.get(s["run_dir"])
    return [have[r] for r in REGIMES]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rounds(models, run_data, photo, method: str, px, repeats: int) -> List[List[float]]:
    """``repeats`` rounds of one explanation per model: seconds ``[round][model]``."""
    return [
        [
            timed(lambda m=m, d=d: cam.explain_photo(m, LITE0, d[0], d[1], photo, method=method, at_size=px))
            for m, d in zip(models, run_data)
        ]
        for _ in range(repeats)
    ]


def summary(label: str, times: List[List[float]], px: str, extra: Dict = None) -> List:
    totals = [sum(r) for r in times]
    per_run = statistics.median(t for r in times for t in r)
    total = statistics.median(totals)
    emit(
        "explain", row=label, px=px, threads=torch.get_num_threads(), total_s=total, per_run_s=per_run,
        rounds=len(times), **(extra or {}),
    )  # fmt: skip
    return [label, px, f"{total:.3f}", f"{per_run:.3f}", f"{min(totals):.3f}–{max(totals):.3f}", len(times), cpu_isa()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else "sample")
    p.add_argument("--runs-dir", type=Path, help="a run store to reuse (and keep) the 4 runs in; default: temporary")
    p.add_argument("--train-px", type=int, default=64, help="the runs' own image size (default 64)")
    p.add_argument("--limit-per-class", type=int, default=40)
    p.add_argument("--px", type=int, default=224, help="the size the page's target is stated at (default 224)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--scorecam-repeats", type=int, default=3)
    p.add_argument("--scorecam-at-px", action="store_true", help="also force one Score-CAM at --px (tens of seconds)")
    args = p.parse_args()
    configure_threads(None)
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or Path(tmp) / "runs"
        settings = Settings(cache_dir=settings.cache_dir, runs_dir=runs_dir)
        root = resolve_source(args.data, settings)
        runs = runs_for(RunStore(runs_dir), str(root), args, settings)
        listing = scan_image_folder(root)
        photo_path = Path(root) / listing.files[0]
        photo = load_photo(photo_path, photo_path.name)
        bench(args, runs, photo, photo_path)


def bench(args, runs: List[RunRecord], photo, photo_path: Path) -> None:
    px = args.px
    command = shlex.join(["python", os.path.relpath(__file__, Path.cwd()), *sys.argv[1:]])
    print(f"# machine: {machine()}")
    print(f"# ISA {cpu_isa()} (lscpu: {lscpu_isa()}), torch threads {torch.get_num_threads()}")
    print(f"# command: {command}")
    print(f"# photo: {photo_path} ({photo.width}x{photo.height})")
    models = [load_run_model(r) for r in runs]  # once, as the page caches them
    run_data = [run_classes_and_size(r) for r in runs]
    own = run_data[0][1]
    for r in runs:
        print(f"# run {r.run_id} ({r.config['model']['regime']}, {run_classes_and_size(r)[1]} px)")

    first = timed(lambda: cam.explain_photo(models[0], LITE0, *run_data[0], photo, at_size=px))
    cold = [
        timed(lambda m=m, d=d: cam.explain_photo(m, LITE0, *d, photo, at_size=px)) for m, d in zip(models, run_data)
    ]
    ex = cam.explain_photo(models[0], LITE0, *run_data[0], photo, at_size=px)
    print(f"# precision of the pass: {ex.precision} (model parameters), input float32; layer {ex.target_layer}")
    print(f"# first call of the process (grad-cam import, matplotlib): {first:.2f} s; then each model's first "
          f"call: {', '.join(f'{t:.3f}' for t in cold)} s")  # fmt: skip

    def row(label: str, method: str, size, cut: bool = True) -> Tuple[List, List[List[float]]]:
        cam.CUT_AT_LAYER = cut
        try:
            times = rounds(models, run_data, photo, method, size, args.repeats)
        finally:
            cam.CUT_AT_LAYER = True
        return summary(label, times, f"{size}" if size else f"{own} (own)", {"method": method, "cut": cut}), times

    gradcam_row, gradcam = row("Grad-CAM, graph from the target layer (the code path)", "gradcam", px)
    rows = [
        gradcam_row,
        row("Grad-CAM++, graph from the target layer", "gradcam++", px)[0],
        row("Grad-CAM, graph from the input", "gradcam", px, cut=False)[0],
        row("Grad-CAM, graph from the target layer", "gradcam", None)[0],
    ]

    x = torch.rand(1, 3, px, px)
    estimates = [cam.scorecam_estimate(m, x, cam.layer_channels(m, x, m.body.bn2)) for m in models]
    default_batch = cam.SCORECAM_BATCH
    for batch in (16, 32, 64, 128):
        cam.SCORECAM_BATCH = batch
        try:
            times = rounds(models, run_data, photo, "scorecam", None, args.scorecam_repeats)
            rows.append(summary(f"Score-CAM, batch {batch}", times, f"{own} (own)", {"batch": batch}))
        except ConfigError as e:  # its estimate is over the limit on this machine now
            rows.append([f"Score-CAM, batch {batch}: refused ({e})", f"{own} (own)", "—", "—", "—", 0, cpu_isa()])
    cam.SCORECAM_BATCH = default_batch
    print(f"\n## One CAM for each of 4 runs (EfficientNet-Lite0), ISA {cpu_isa()}, {torch.get_num_threads()} threads, "
          f"fp32")  # fmt: skip
    table(["method", "px", "4 runs, median s", "one run, median s", "4 runs, range s", "rounds", "ISA"], rows)
    total = statistics.median(sum(r) for r in gradcam)
    verdict = "met" if total <= TARGET_SECONDS else "MISSED"
    print(f"Target: one Grad-CAM for 4 runs at {px} px ≤ {TARGET_SECONDS:.0f} s: {total:.3f} s, {verdict} "
          f"(ISA {cpu_isa()}, {torch.get_num_threads()} threads).")  # fmt: skip
    print(f"Score-CAM at {px} px, estimated per run (what the refusal reads, limit {cam.SCORECAM_MAX_SECONDS:.0f} s): "
          f"{', '.join(f'{e:.1f}' for e in estimates)} s; the masked copies alone would take "
          f"{1280 * 3 * px * px * 4 / 2**20:,.0f} MB (limit {cam.SCORECAM_MAX_BYTES // 2**20} MB).")  # fmt: skip
    if args.scorecam_at_px:
        limits = cam.SCORECAM_MAX_SECONDS, cam.SCORECAM_MAX_BYTES
        cam.SCORECAM_MAX_SECONDS, cam.SCORECAM_MAX_BYTES = float("inf"), 2**40
        actual = timed(lambda: cam.explain_photo(models[0], LITE0, *run_data[0], photo, method="scorecam", at_size=px))
        cam.SCORECAM_MAX_SECONDS, cam.SCORECAM_MAX_BYTES = limits
        emit("explain", row="Score-CAM forced", px=px, seconds=actual, estimate=estimates[0])
        print(f"Score-CAM forced at {px} px, one run: {actual:.1f} s (estimated {estimates[0]:.1f} s), "
              f"ISA {cpu_isa()}.")  # fmt: skip

    t_maps = [timed(lambda: feature_maps(models[0], LITE0, photo, px)) for _ in range(args.repeats)]
    t_filters = [timed(lambda: first_layer_filters(models[0], LITE0)) for _ in range(args.repeats)]
    maps_s, filters_s = statistics.median(t_maps), statistics.median(t_filters)
    emit("features", px=px, maps_s=maps_s, filters_s=filters_s)
    print(f"Feature maps at {px} px (three depths, 8 channels each), one run: {maps_s:.3f} s; filter grid: "
          f"{filters_s:.4f} s (medians of {args.repeats}, ISA {cpu_isa()}).")  # fmt: skip


if __name__ == "__main__":
    main()
