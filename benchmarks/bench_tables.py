"""Compare page tables and figures: pandas (ewm, groupby().agg(), Styler.highlight_*) against the hand-written
code they replaced.

The baseline is the same modules as they were at a git revision (default 658b6b2, just before the change),
loaded from ``git show`` next to the current ones and timed on the same synthetic run store, interleaved,
median of the repeats. Run from a clone with its history::

    python benchmarks/bench_tables.py [--baseline REV] [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import timeit
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.app import plots  # noqa: E402
from core.models.device import cpu_isa  # noqa: E402
from core.runs import compare  # noqa: E402
from core.runs.store import RunRecord  # noqa: E402


def module_at(rev: str, path: str, name: str) -> types.ModuleType:
    """The module ``path`` as it was at ``rev`` (it may import today's core for what did not change)."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True)
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:{path}"
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source.stdout, module.__file__, "exec"), module.__dict__)
    return module


def synthetic_runs(n: int, seed: int = 0) -> list:
    """``n`` runs as the store lists them: mostly finished, some interrupted, failed or running."""
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        regime = rng.choice(["scratch", "transfer", "finetune", "full"])
        status = rng.choices(["finished", "interrupted", "failed", "running"], [8, 1, 1, 1])[0]
        epochs = rng.choice([2, 4])
        done = epochs if status == "finished" else rng.randint(0, epochs)
        metrics = [{"epoch": e + 1, "val_loss": rng.random(), "val_acc": rng.random(), "seconds": rng.uniform(1, 50)}
                   for e in range(done)]  # fmt: skip
        summary = {}
        if status == "finished":
            summary = {"test_acc": round(rng.random(), 2), "best_val_acc": rng.random(), "best_epoch": 1,
                       "train_seconds": round(rng.uniform(1, 100), 1), "seconds_per_epoch": rng.uniform(1, 50),
                       "trainable_params": 1000, "frozen_params": 5000, "total_params": 6000}  # fmt: skip
        config = {"model": {"regime": regime, "backbone": rng.choice(["resnet18", "efficientnet_lite0"])},
                  "data": {"source": rng.choice(["sample", "flowers"]), "img_size": rng.choice([64, 224])},
                  "train": {"epochs": epochs, "seed": rng.randint(0, 3)},
                  "resolved": {"trainable_params": 1000, "frozen_params": 5000}}  # fmt: skip
        runs.append(RunRecord(run_id=f"2026{i:04d}-000000-{regime}-x", dir=Path("/nonexistent"), status=status,
                              config=config, summary=summary, metrics=metrics,
                              started_at="2026-01-01T00:00:00+00:00"))  # fmt: skip
    return runs


def old_styled(old, df):
    """The page's styled runs table before: best_index + one Styler.apply."""
    best = old.best_index(df)

    def highlight(col):
        style = "background-color: rgba(46, 160, 67, 0.28); font-weight: 600"
        return [style if i in best.get(col.name, ()) else "" for i in col.index]

    fmt = {c: "{:.1%}" for c in ("best val acc", "test acc")}
    fmt.update({"train s": "{:.1f}", "s/epoch": "{:.2f}", "trainable params": "{:,}", "total params": "{:,}"})
    return df.style.apply(highlight, subset=list(old.BEST_IS)).format(na_rep="—").format(fmt, na_rep="—")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="658b6b2", help="git revision of the hand-written code")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    old = module_at(args.baseline, "core/runs/compare.py", "baseline_compare")
    old_plots = module_at(args.baseline, "core/app/plots.py", "baseline_plots")
    rng = random.Random(0)
    series = [None if rng.random() < 0.05 else rng.random() for _ in range(200)]
    long_series = [None if rng.random() < 0.05 else rng.random() for _ in range(2000)]
    runs = synthetic_runs(200)
    table = compare.runs_table(runs)
    curves = [(f"run {k}", ["scratch", "transfer", "finetune", "full"][k % 4],
               [{"epoch": e + 1, "val_acc": rng.random(), "val_loss": rng.random(), "seconds": 1.0}
                for e in range(200)]) for k in range(8)]  # fmt: skip
    old_series = [old_plots.CurveSeries(*c) for c in curves]
    new_series = [plots.CurveSeries(*c) for c in curves]
    cases = {  # name: (old, new, calls per timing)
        "smooth, 200 epochs": (lambda: old_plots.smooth(series, 0.6), lambda: plots.smooth(series, 0.6), 200),
        "smooth, 2,000 epochs": (lambda: old_plots.smooth(long_series, 0.6),
                                 lambda: plots.smooth(long_series, 0.6), 50),
        "runs_table + regime_summary, 200 runs": (lambda: old.regime_summary(old.runs_table(runs)),
                                                  lambda: compare.regime_summary(compare.runs_table(runs)), 5),
        "styled runs table to_html, 200 rows": (lambda: old_styled(old, table).to_html(),
                                                lambda: compare.styled_runs_table(table).to_html(), 2),
        "curves_figure, 8 runs x 200 epochs": (lambda: old_plots.curves_figure(old_series, 0.6),
                                               lambda: plots.curves_figure(new_series, 0.6), 2),
        "race_figure, 8 runs x 200 epochs": (lambda: old_plots.race_figure(old_series),
                                             lambda: plots.race_figure(new_series), 2),
    }  # fmt: skip
    print(f"ISA {cpu_isa()}, {os.cpu_count()} cores; baseline {args.baseline}; median of {args.repeats}, interleaved\n")
    print("| case | old ms | new ms | new/old |\n|---|---:|---:|---:|")
    for name, (fo, fn, n) in cases.items():
        fo(), fn()
        t_old, t_new = [], []
        for _ in range(args.repeats):
            t_old.append(timeit.timeit(fo, number=n) / n)
            t_new.append(timeit.timeit(fn, number=n) / n)
        mo, mn = statistics.median(t_old), statistics.median(t_new)
        print(f"| {name} | {mo * 1e3:.3f} | {mn * 1e3:.3f} | {mn / mo:.2f} |")


if __name__ == "__main__":
    main()
