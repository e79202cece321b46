"""What one second of live panels costs the server: N open Train tabs over a store of R runs, one of them training.

Baseline: every tab lists the whole run store itself (``RunStore.list_runs()``, what each tab did before
the shared listing). Now: every tab asks the server's shared listing (``core.runs.listing``), which is
re-read at most every half second, and then only for the runs whose files changed. The store is made of
real run files (written through ``RunWriter``: config, status, 10 epochs of metrics, summary), and one run
rewrites its ``progress.json`` and appends an epoch between refreshes, as a training run does.

    python benchmarks/bench_listing.py [--runs 120] [--tabs 15] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models.device import cpu_isa  # noqa: E402
from core.runs.listing import Listing  # noqa: E402
from core.runs.store import RunStore  # noqa: E402


def make_store(runs_dir: Path, n: int):
    """``n`` finished runs of 10 epochs, and one running run (returned: its writer)."""
    store = RunStore(runs_dir)
    config = {"data": {"source": "sample", "img_size": 64}, "model": {"regime": "transfer", "backbone": "resnet18"},
              "train": {"epochs": 10}}  # fmt: skip
    for i in range(n):
        w = store.create("transfer", "resnet18")
        w.write_config({**config, "group": f"g-{i:04d}"})
        for e in range(1, 11):
            w.append_metrics({"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_acc": 0.5, "seconds": 1.0})
        w.write_summary({"status": "finished", "test_acc": 0.5, "per_class": {str(c): 0.5 for c in range(5)}})
        w.release()
    live = store.create("full", "resnet18")
    live.write_config({**config, "group": "g-9999"})
    return store, live


def one_second(tabs: int, read, live, second: int) -> float:
    """The live run moves on, then every tab refreshes once: seconds of CPU the server spends."""
    live.write_progress({"phase": "train", "epoch": second, "batch": 1})
    live.append_metrics({"epoch": second, "val_loss": 0.5, "val_acc": 0.5})
    start = time.process_time()
    for _ in range(tabs):
        read()
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=120)
    ap.add_argument("--tabs", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store, live = make_store(Path(tmp) / "runs", args.runs)
        listing = Listing(store.dir)
        listing.runs()  # the server's first read, at start
        base, now = [], []
        for second in range(args.repeats):  # interleaved: both see the same store, the same disk cache
            base.append(one_second(args.tabs, store.list_runs, live, second))
            time.sleep(listing.max_age)  # a new second: the shared listing is due for a refresh
            now.append(one_second(args.tabs, listing.runs, live, second))
        b, n = statistics.median(base), statistics.median(now)
        print(f"ISA {cpu_isa()} · {args.runs + 1} runs in the store, one training · {args.tabs} tabs refreshing once")
        print(f"  every tab lists the store (baseline) : {b * 1000:8.1f} ms CPU per second of live panels")
        print(f"  one shared, cached listing          : {n * 1000:8.1f} ms CPU per second of live panels")
        print(f"  ratio                               : {b / n:8.0f}x less (median of {args.repeats})")
        print(f"  command: python benchmarks/bench_listing.py --runs {args.runs} --tabs {args.tabs}")
        live.release()


if __name__ == "__main__":
    main()
