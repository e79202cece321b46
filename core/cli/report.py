"""``python -m core report``: the chosen runs as one self-contained HTML file (see :mod:`core.app.report`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.cli import args as a
from core.errors import DataError
from core.files import atomic_write
from core.runs.store import RunStore


def add_parsers(sub) -> None:
    r = sub.add_parser("report", help="a self-contained HTML report of runs: verdict, table, curves, commands")
    r.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run folders or run ids")
    r.add_argument("--out", required=True, help="the HTML file to write (replaced if it exists)")
    a.add_runs_dir(r, "where run ids are looked up (default: $TRANSFERLAB_RUNS_DIR or per-user)")
    r.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from core.app.report import build_report  # noqa: PLC0415 (lazy: plotly and torch; keeps `python -m core` quick to start)

    store = RunStore(a.settings_from(args).runs_dir)
    runs = [store.get(run) for run in dict.fromkeys(args.runs)]  # DataError naming a run that is not there
    corrupt = [r for r in runs if r.status == "corrupt"]
    if corrupt:
        raise DataError(
            f"Run {corrupt[0].run_id} cannot be read ({corrupt[0].error}), so it cannot be reported. Leave it out, "
            f"or repair its folder {corrupt[0].dir}."
        )
    t = time.perf_counter()
    text = build_report(runs)
    out = Path(args.out)
    with atomic_write(out, "w") as f:
        f.write(text)
    seconds = time.perf_counter() - t
    size = out.stat().st_size
    print(f"report: {out} ({size / 1e6:.1f} MB, {len(runs)} runs, built in {seconds:.1f} s)", file=sys.stderr)
    print(json.dumps({"out": str(out), "bytes": size, "runs": [r.run_id for r in runs], "seconds": round(seconds, 2)}))
    return 0
