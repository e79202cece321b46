"""Command line: ``python -m core COMMAND``, one module per command group.

* :mod:`core.cli.training`: ``train`` (one run), ``race`` (the four regimes, planned to a time budget);
* :mod:`core.cli.runs`: ``evaluate`` (a saved run), ``runs`` (the run store), ``settings``;
* :mod:`core.cli.retrieval`: ``index``, ``search``, ``retrieval-eval``;
* :mod:`core.cli.triplet`: ``train-embedder`` (the triplet method's head, on cached deep features);
* :mod:`core.cli.zoo`: ``zoo`` (every backbone: size, accuracy, latency here);
* :mod:`core.cli.explain`: ``explain`` (a run's CAM heat map and feature maps of one photo);
* :mod:`core.cli.report`: ``report`` (runs as one self-contained HTML file);
* :mod:`core.cli.launches`: ``export-launch``, ``import-launch`` (a launch as one .zip, to replay elsewhere).

Each module registers its sub-commands with ``set_defaults(handler=...)``; shared argument types live in
:mod:`core.cli.args`. Progress goes to stderr (tqdm); the last line on stdout is one JSON object, for
scripts. User mistakes (bad arguments, missing data or weights) give a one-paragraph message and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from core.cli import explain, launches, report, retrieval, runs, training, triplet, zoo
from core.errors import TransferLabError
from core.files import remove_stale_temporaries
from core.settings import Settings

COMMAND_GROUPS = (training, runs, retrieval, triplet, zoo, explain, report, launches)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Transfer Lab from the command line.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    remove_stale_temporaries(Settings.from_env().written_folders())  # what killed processes left behind
    try:
        return args.handler(args)
    except TransferLabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
