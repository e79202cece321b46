"""Command line: ``python -m core {train,race,evaluate,runs,settings}``, and ``{index,search,retrieval-eval}``
for image retrieval (:mod:`core.retrieval_cli`).

Progress goes to stderr (tqdm); the last line on stdout is one JSON object, for scripts. User mistakes
(bad arguments, missing data or weights) give a one-paragraph message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

from core.config import (BUDGET_PRESETS, PRESET_NAMES, REGIMES, DataConfig, ModelConfig, RunConfig,
                         apply_preset, regime_defaults)
from core.errors import TransferLabError

SUMMARY_KEYS = ("run_id", "run_dir", "status", "regime", "backbone", "dataset", "epochs", "epochs_done",
                "best_epoch", "best_val_acc", "test_acc", "train_seconds", "seconds_per_epoch",
                "trainable_params", "frozen_params", "weights_source")


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``, with a plain message otherwise."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'")
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {v}")
        return v

    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {v}")
    return v


def _budget_minutes(text: str) -> float:
    from core.planner import MAX_BUDGET_MINUTES, MIN_BUDGET_MINUTES

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got '{text}'")
    if not MIN_BUDGET_MINUTES <= v <= MAX_BUDGET_MINUTES:
        raise argparse.ArgumentTypeError(f"must be between {MIN_BUDGET_MINUTES} and {MAX_BUDGET_MINUTES} minutes, "
                                         f"got {v:g}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from core.backbones import BACKBONES

    p = argparse.ArgumentParser(prog="python -m core", description="Transfer Lab from the command line.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run and save it in the run store")
    t.add_argument("--data", default="sample", help="'sample' (built-in, offline), 'flowers' (downloaded once), "
                   "a folder with one sub-folder per class, or a .zip of one (default: sample)")
    t.add_argument("--regime", required=True, choices=REGIMES)
    t.add_argument("--backbone", default="resnet18", choices=list(BACKBONES))
    t.add_argument("--preset", choices=list(PRESET_NAMES),
                   help="start from a preset; other flags override it. '5 minutes' and 'quick demo' (2 minutes) "
                   "plan this regime to finish within that time on this machine")
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--img-size", type=_positive_int, help="image side in pixels (default 224)")
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--freeze", type=_nonneg_int, help="finetune: leading parameter tensors to freeze "
                   "(default: the notebook's 50 of 62 for ResNet18, the same share for other backbones)")
    t.add_argument("--limit-per-class", type=_positive_int, help="use at most K images per class")
    t.add_argument("--seed", type=_nonneg_int)
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    t.add_argument("--feature-cache", choices=["auto", "on", "off"])
    t.add_argument("--threads", type=_positive_int)
    t.add_argument("--runtime", choices=["auto", "torch", "onnxruntime"],
                   help="frozen passes: auto = ONNX Runtime where it is measured 1.5x faster here, else PyTorch")
    t.add_argument("--train-img-size", type=_positive_int,
                   help="progressive resizing (scratch, full): train at this size, the last epoch at --img-size")
    t.add_argument("--runs-dir", help="where to save the run (default: $TRANSFERLAB_RUNS_DIR or per-user)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    rc = sub.add_parser("race", help="train the four regimes one after another, planned to a time budget")
    rc.add_argument("--data", default="sample", help="as for train (default: sample)")
    rc.add_argument("--backbone", default="efficientnet_lite0", choices=list(BACKBONES))
    rc.add_argument("--budget-minutes", type=_budget_minutes, default=5.0,
                    help="how long the whole race may take, 1-30 minutes (default 5)")
    rc.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    rc.add_argument("--runs-dir", help="where to save the runs (default: $TRANSFERLAB_RUNS_DIR or per-user)")
    rc.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="accuracy of a saved run on its own test split or on another folder")
    e.add_argument("run_dir")
    e.add_argument("--data", help="a folder (or .zip) of the same classes; default: the run's own test split")

    r = sub.add_parser("runs", help="list the saved runs")
    r.add_argument("--runs-dir")

    sub.add_parser("settings", help="show where data, caches and runs are kept")

    from core.retrieval_cli import add_parsers

    add_parsers(sub)
    return p


def _settings(args: argparse.Namespace):
    from core.settings import Settings

    settings = Settings.from_env()
    return dataclasses.replace(settings, runs_dir=Path(args.runs_dir)) if args.runs_dir else settings


def config_from_args(args: argparse.Namespace, settings=None, progress=None) -> RunConfig:
    cfg = RunConfig(data=DataConfig(source=args.data), model=ModelConfig(backbone=args.backbone, regime=args.regime))
    if args.preset in BUDGET_PRESETS:
        from core.race import plan_for

        planned = plan_for(args.data, args.backbone, BUDGET_PRESETS[args.preset] * 60, settings or _settings(args),
                           args.precision or "auto", regimes=[args.regime], preset=args.preset,
                           **({"on_progress": progress} if progress else {}))
        cfg = planned.configs[0]
    elif args.preset:
        cfg = apply_preset(cfg, args.preset)
    else:
        cfg = regime_defaults(cfg)
    for section, attr, value in (
        ("data", "img_size", args.img_size), ("data", "limit_per_class", args.limit_per_class),
        ("model", "freeze", args.freeze), ("train", "epochs", args.epochs), ("train", "batch_size", args.batch_size),
        ("train", "lr", args.lr), ("train", "seed", args.seed), ("train", "precision", args.precision),
        ("train", "feature_cache", args.feature_cache), ("train", "num_threads", args.threads),
        ("train", "runtime", args.runtime), ("train", "train_img_size", args.train_img_size),
    ):
        if value is not None:
            setattr(getattr(cfg, section), attr, value)
    if args.seed is not None:
        cfg.data.split_seed = args.seed
    return cfg.validate()


class _TqdmListener:
    """Turns engine events into tqdm bars on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.key = None

    def _bar(self, key, total, desc, unit):
        from tqdm import tqdm

        if self.key != key:
            self.close()
            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
            self.key = key
        return self.bar

    def __call__(self, event) -> None:
        from core.events import BatchEnd, EpochEnd, PhaseProgress

        if self.quiet:
            return
        if isinstance(event, PhaseProgress) and event.total and event.phase != "test":
            bar = self._bar(("phase", event.phase, event.message.split("(")[0]), event.total, event.message, "it")
            bar.n = event.done
            bar.refresh()
        elif isinstance(event, BatchEnd):
            bar = self._bar(("epoch", event.epoch), event.batches, f"epoch {event.epoch}/{event.epochs}", "batch")
            bar.n = event.batch
            bar.set_postfix(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_sec:.0f}")
        elif isinstance(event, EpochEnd):
            self.close()
            best = " *best*" if event.is_best else ""
            print(f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.3f} acc {event.train_acc:.3f} | "
                  f"val loss {event.val_loss:.3f} acc {event.val_acc:.3f} | {event.seconds:.1f}s{best}",
                  file=sys.stderr)

    def progress(self, done: int, total, message: str) -> None:
        """A :data:`core.progress.ProgressFn` drawing one bar per message."""
        if self.quiet or not total:
            return
        bar = self._bar(("progress", message), total, message, "it")
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.key = None


class _CtrlC:
    """First Ctrl-C: stop after the current batch and keep the run as interrupted; the second aborts."""

    def __init__(self):
        self.stop = threading.Event()

    def __enter__(self) -> threading.Event:
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self.stop

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        print("\nstopping after this batch (Ctrl-C again to abort)...", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._old)


def cmd_train(args: argparse.Namespace) -> int:
    from core.train import train_run

    settings = _settings(args)
    listener = _TqdmListener(args.quiet)
    try:
        cfg = config_from_args(args, settings, listener.progress)
        with _CtrlC() as stop:
            summary = train_run(cfg, settings, on_event=listener, should_stop=stop.is_set)
    finally:
        listener.close()
    if summary.get("skipped_files"):
        print(f"note: {summary['skipped_files']} unreadable file(s) were skipped (listed in the run's split.json)",
              file=sys.stderr)
    print(json.dumps({k: summary.get(k) for k in SUMMARY_KEYS}))
    return 0 if summary["status"] in ("finished", "interrupted") else 1


def cmd_race(args: argparse.Namespace) -> int:
    from core.race import run_race

    settings = _settings(args)
    listener = _TqdmListener(args.quiet)

    def on_run_end(row) -> None:
        listener.close()
        print(json.dumps(row), flush=True)

    try:
        with _CtrlC() as stop:
            result = run_race(args.data, args.backbone, args.budget_minutes, settings, args.precision,
                              on_event=listener, on_progress=listener.progress, on_run_end=on_run_end,
                              should_stop=stop.is_set)
    finally:
        listener.close()
    print(f"race: {result['wall_seconds']:.0f} s (predicted {result['predicted_seconds']:.0f} s, budget "
          f"{result['budget_seconds']:.0f} s)", file=sys.stderr)
    print(json.dumps({k: result[k] for k in ("budget_seconds", "wall_seconds", "predicted_seconds", "runs")}))
    return 0 if all(r["status"] in ("finished", "interrupted") for r in result["runs"]) else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate_run

    result = evaluate_run(args.run_dir, args.data)
    seen = result["seen_in_training"]
    if seen["train"] or seen["val"]:
        print(f"warning: {seen['train']} of these {result['n']} images were in the run's training split and "
              f"{seen['val']} in its validation split: this accuracy is optimistic.", file=sys.stderr)
    print(json.dumps({k: result[k] for k in ("accuracy", "n", "per_class", "data", "run_id", "seen_in_training")}))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from core.runstore import RunStore
    from core.settings import Settings

    store = RunStore(Path(args.runs_dir) if args.runs_dir else Settings.from_env().runs_dir)
    rows = []
    for r in store.list_runs():
        rows.append({"run_id": r.run_id, "status": r.status, "test_acc": r.summary.get("test_acc"),
                     "best_val_acc": r.summary.get("best_val_acc"), "epochs_done": len(r.metrics)})
        print(f"{r.run_id:55s} {r.status:12s} test_acc={r.summary.get('test_acc')}", file=sys.stderr)
    print(json.dumps(rows))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from core.settings import Settings

    print(json.dumps(Settings.from_env().describe()))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from core.retrieval_cli import HANDLERS

    handler = {"train": cmd_train, "race": cmd_race, "evaluate": cmd_evaluate, "runs": cmd_runs,
               "settings": cmd_settings, **HANDLERS}[args.command]
    try:
        return handler(args)
    except TransferLabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
