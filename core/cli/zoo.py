"""``python -m core zoo``: every backbone in one table (:mod:`core.explain.zoo`), one JSON line each on stdout."""

from __future__ import annotations

import argparse
import json

from core.cli import args as a
from core.cli.progress import TqdmListener


def add_parsers(sub) -> None:
    z = sub.add_parser(
        "zoo",
        help="every backbone: parameters, weights, published ImageNet accuracy, CPU latency, best flowers accuracy",
    )
    z.add_argument(
        "--measure",
        action="store_true",
        help="measure the CPU latency of the backbones not yet measured on this machine (cached; seconds each)",
    )
    a.add_runs_dir(z)
    a.add_quiet(z)
    z.set_defaults(handler=cmd_zoo)


def cmd_zoo(args: argparse.Namespace) -> int:
    from core.explain.zoo import zoo_table  # noqa: PLC0415 (lazy: it loads torch; keeps `python -m core` quick to start)

    bars = TqdmListener(args.quiet)
    try:
        rows = zoo_table(a.settings_from(args), measure=args.measure, on_progress=bars.progress)
    finally:
        bars.close()
    for row in rows:
        print(json.dumps(row.as_json()))
    return 0
