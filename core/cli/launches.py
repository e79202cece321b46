"""``python -m core export-launch`` and ``import-launch``: a launch (runs raced together) as one ``.zip``.

A teacher races at home, exports the launch, imports it on the classroom machine and replays it on the Train
page (no training, no CPU). ``python -m core runs`` shows each run's launch id. The archive's checks are in
:mod:`core.runs.archive`; a refused archive exits with status 2 and one paragraph saying why.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli import args as a
from core.cli.progress import TqdmListener
from core.runs.archive import export_launch, import_launch


def add_parsers(sub) -> None:
    e = sub.add_parser("export-launch", help="write a launch's run folders to one .zip (to import elsewhere)")
    e.add_argument("launch_id", help="the launch (group) id, as `python -m core runs` lists it")
    e.add_argument("out", type=Path, help="the .zip to write")
    e.add_argument("--weights", action="store_true", help="include each run's best.pt (larger)")
    a.add_runs_dir(e)
    a.add_quiet(e)
    e.set_defaults(handler=cmd_export)

    i = sub.add_parser("import-launch", help="add a launch exported elsewhere to the run store (checked first)")
    i.add_argument("file", type=Path, help="the .zip export-launch wrote")
    a.add_runs_dir(i)
    a.add_quiet(i)
    i.set_defaults(handler=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    bars = TqdmListener(args.quiet)
    try:
        manifest = export_launch(a.settings_from(args).runs_dir, args.launch_id, args.out, args.weights, bars.progress)
    finally:
        bars.close()
    size = args.out.stat().st_size
    print(json.dumps({"launch": args.launch_id, "out": str(args.out), "runs": manifest["runs"], "bytes": size,
                      "weights": args.weights}))  # fmt: skip
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    bars = TqdmListener(args.quiet)
    try:
        result = import_launch(args.file, a.settings_from(args).runs_dir, bars.progress)
    finally:
        bars.close()
    print(json.dumps(result))
    return 0
