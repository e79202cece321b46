"""Argument types and options shared by every command: plain messages for bad values, one place each."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Callable, Tuple

from core.settings import Settings
from core.training.planner import MAX_BUDGET_MINUTES, MIN_BUDGET_MINUTES

DATA_HELP = (
    "'sample' (built-in, offline), 'flowers' (downloaded once), a folder with one sub-folder per class, "
    "or a .zip of one (default: sample)"
)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, with a plain message otherwise."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {v}")
        return v

    return parse


positive_int, nonneg_int = int_at_least(1), int_at_least(0)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {v}")
    return v


def nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def budget_minutes(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got '{text}'") from None
    if not MIN_BUDGET_MINUTES <= v <= MAX_BUDGET_MINUTES:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_BUDGET_MINUTES} and {MAX_BUDGET_MINUTES} minutes, got {v:g}"
        )
    return v


def pixel_size(text: str) -> Tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 86x128, got '{text}'")
    return int(m.group(1)), int(m.group(2))


def add_data(p: argparse.ArgumentParser, help: str = DATA_HELP) -> None:
    p.add_argument("--data", default="sample", help=help)


def add_runs_dir(p: argparse.ArgumentParser, help: str = "the run store (default: $TRANSFERLAB_RUNS_DIR or per-user)"):
    p.add_argument("--runs-dir", help=help)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings, with ``--runs-dir`` when the command has it and it was given."""
    settings = Settings.from_env()
    runs_dir = getattr(args, "runs_dir", None)
    return dataclasses.replace(settings, runs_dir=Path(runs_dir)) if runs_dir else settings
