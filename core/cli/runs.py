"""``python -m core evaluate`` (a saved run's accuracy), ``runs`` (the run store) and ``settings``."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import args as a
from core.runs.store import RunStore
from core.settings import Settings


def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="accuracy of a saved run on its own test split or on another folder")
    e.add_argument("run_dir")
    e.add_argument("--data", help="a folder (or .zip) of the same classes; default: the run's own test split")
    e.set_defaults(handler=cmd_evaluate)

    r = sub.add_parser("runs", help="list the saved runs")
    a.add_runs_dir(r)
    r.set_defaults(handler=cmd_runs)

    s = sub.add_parser("settings", help="show where data, caches and runs are kept")
    s.set_defaults(handler=cmd_settings)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.runs.evaluate import evaluate_run  # noqa: PLC0415 (lazy: only this command needs it; keeps `python -m core` quick to start)

    result = evaluate_run(args.run_dir, args.data)
    seen = result["seen_in_training"]
    if seen["train"] or seen["val"]:
        print(
            f"warning: {seen['train']} of these {result['n']} images were in the run's training split and "
            f"{seen['val']} in its validation split: this accuracy is optimistic.",
            file=sys.stderr,
        )
    print(json.dumps({k: result[k] for k in ("accuracy", "n", "per_class", "data", "run_id", "seen_in_training")}))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    rows = []
    for r in RunStore(a.settings_from(args).runs_dir).list_runs():
        rows.append(
            {
                "run_id": r.run_id,
                "status": r.status,
                "test_acc": r.summary.get("test_acc"),
                "best_val_acc": r.summary.get("best_val_acc"),
                "epochs_done": len(r.metrics),
                "launch": r.config.get("group") or None,  # for export-launch
            }
        )
        launch = f" launch={r.config['group']}" if r.config.get("group") else ""
        print(f"{r.run_id:55s} {r.status:12s} test_acc={r.summary.get('test_acc')}{launch}", file=sys.stderr)
    print(json.dumps(rows))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    print(json.dumps(Settings.from_env().describe()))
    return 0
