"""``python -m core train`` (one run, a regime or the ``mlp`` baseline) and ``python -m core race`` (the four
regimes, planned to a time budget; ``--baselines`` adds the MLP after them, unplanned)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from core.cli import args as a
from core.cli.progress import CtrlC, TqdmListener
from core.errors import ConfigError
from core.models.backbones import BACKBONES
from core.models.device import PRECISIONS
from core.models.regimes import BASELINES, KNOWN, is_baseline, mlp_param_count
from core.models.runtime import RUNTIMES
from core.progress import ProgressFn
from core.settings import Settings
from core.training.augment import AUGMENTS
from core.training.command import TRAIN_FLAGS, base_config, config_from_flags, dest
from core.training.config import BUDGET_PRESETS, FEATURE_CACHE, PRESET_NAMES, SCHEDULES, RunConfig
from core.training.planner import BASELINES_NOT_PLANNED

SUMMARY_KEYS = (
    "run_id",
    "run_dir",
    "status",
    "regime",
    "backbone",
    "dataset",
    "epochs",
    "epochs_done",
    "best_epoch",
    "best_val_acc",
    "test_acc",
    "train_seconds",
    "seconds_per_epoch",
    "trainable_params",
    "frozen_params",
    "weights_source",
    "augment",
)
AUGMENT_HELP = (
    "augmentation of the training images: off, flip-rotate (the notebook's flip + small rotation, the default) or "
    "strong (random resized crop + colour jitter + flip)"
)


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train one run and save it in the run store")
    a.add_data(t)
    t.add_argument(
        "--regime",
        required=True,
        choices=list(KNOWN),
        help="one of the four regimes, or 'mlp': the MLP baseline (no convolutions, from scratch; --backbone unused)",
    )
    t.add_argument("--backbone", default="resnet18", choices=list(BACKBONES))
    t.add_argument(
        "--preset",
        choices=list(PRESET_NAMES),
        help="start from a preset; other flags override it. '5 minutes' and 'quick demo' (2 minutes) "
        "plan this regime to finish within that time on this machine",
    )
    t.add_argument("--epochs", type=a.positive_int)
    t.add_argument("--img-size", type=a.positive_int, help="image side in pixels (default 224)")
    t.add_argument("--batch-size", type=a.positive_int)
    t.add_argument("--lr", type=a.positive_float)
    t.add_argument(
        "--freeze",
        type=a.nonneg_int,
        help="finetune: leading parameter tensors to freeze "
        "(default: the notebook's 50 of 62 for ResNet18, the same share for other backbones)",
    )
    t.add_argument("--limit-per-class", type=a.positive_int, help="use at most K images per class")
    t.add_argument("--augment", choices=list(AUGMENTS), help=AUGMENT_HELP)
    t.add_argument("--seed", type=a.nonneg_int, help="the training's seed, and the split's unless --split-seed")
    t.add_argument("--split-seed", type=a.nonneg_int, help="the seed of the train/val/test split (default: --seed)")
    t.add_argument("--val-fraction", type=a.positive_float, help="share of the images for validation (default 0.1)")
    t.add_argument("--test-fraction", type=a.positive_float, help="share of the images for the test (default 0.1)")
    t.add_argument("--weight-decay", type=a.nonneg_float)
    t.add_argument("--schedule", choices=list(SCHEDULES), help="learning rate: constant, or onecycle (warm-up, decay)")
    t.add_argument("--precision", choices=list(PRECISIONS))
    t.add_argument("--feature-cache", choices=list(FEATURE_CACHE))
    t.add_argument("--feature-views", type=a.positive_int, help="cached views of the training set (default 2)")
    t.add_argument("--threads", type=a.positive_int)
    t.add_argument(
        "--runtime",
        choices=list(RUNTIMES),
        help="frozen passes: auto = ONNX Runtime where it is measured 1.5x faster here, else PyTorch",
    )
    t.add_argument(
        "--train-img-size",
        type=a.positive_int,
        help="progressive resizing (scratch, full): train at this size, the last epoch at --img-size",
    )
    t.add_argument("--full-size-epochs", type=a.positive_int, help="with --train-img-size: epochs at --img-size")
    a.add_runs_dir(t, "where to save the run (default: $TRANSFERLAB_RUNS_DIR or per-user)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=cmd_train)

    rc = sub.add_parser("race", help="train the four regimes one after another, planned to a time budget")
    a.add_data(rc, "as for train (default: sample)")
    rc.add_argument("--backbone", default="efficientnet_lite0", choices=list(BACKBONES))
    rc.add_argument(
        "--budget-minutes",
        type=a.budget_minutes,
        default=5.0,
        help="how long the whole race may take, 1-30 minutes (default 5)",
    )
    rc.add_argument("--precision", choices=list(PRECISIONS), default="auto")
    rc.add_argument(
        "--baselines",
        action="store_true",
        help="after the four, train the MLP baseline on scratch's images (not planned: on top of the budget)",
    )
    rc.add_argument("--augment", choices=list(AUGMENTS), default="flip-rotate", help=AUGMENT_HELP)
    a.add_runs_dir(rc, "where to save the runs (default: $TRANSFERLAB_RUNS_DIR or per-user)")
    a.add_quiet(rc)
    rc.set_defaults(handler=cmd_race)


def config_from_args(
    args: argparse.Namespace, settings: Optional[Settings] = None, progress: Optional[ProgressFn] = None
) -> RunConfig:
    """The run's configuration: the preset (or the regime's defaults), then every flag given on top."""
    if args.preset in BUDGET_PRESETS and is_baseline(args.regime):
        raise ConfigError(
            f"The MLP baseline is not planned to a time budget (the preset '{args.preset}'). Give it --epochs and "
            f"--img-size (and --limit-per-class) instead, or train it in a race: python -m core race --baselines."
        )
    if args.preset in BUDGET_PRESETS:
        from core.training.race import plan_for  # noqa: PLC0415 (lazy: only this command needs it; keeps `python -m core` quick to start)

        planned = plan_for(
            args.data,
            args.backbone,
            BUDGET_PRESETS[args.preset] * 60,
            settings or a.settings_from(args),
            args.precision or "auto",
            regimes=[args.regime],
            preset=args.preset,
            **({"on_progress": progress} if progress else {}),
        )
        cfg = planned.configs[0]
    else:
        cfg = base_config(args.data, args.backbone, args.regime, args.preset)
    return config_from_flags(cfg, {field: getattr(args, dest(flag)) for field, flag in TRAIN_FLAGS.items()})


def cmd_train(args: argparse.Namespace) -> int:
    from core.training.train import train_run  # noqa: PLC0415 (lazy: only this command needs it; keeps `python -m core` quick to start)

    settings = a.settings_from(args)
    listener = TqdmListener(args.quiet)
    try:
        cfg = config_from_args(args, settings, listener.progress)
        with CtrlC() as stop:
            summary = train_run(cfg, settings, on_event=listener, should_stop=stop.is_set)
    finally:
        listener.close()
    if summary.get("skipped_files"):
        print(
            f"note: {summary['skipped_files']} unreadable file(s) were skipped (listed in the run's split.json)",
            file=sys.stderr,
        )
    if is_baseline(cfg.model.regime):
        print(mlp_note(cfg, summary), file=sys.stderr)
    print(json.dumps({k: summary.get(k) for k in SUMMARY_KEYS}))
    return 0 if summary["status"] in ("finished", "interrupted") else 1


def mlp_note(cfg: RunConfig, summary: dict) -> str:
    """The MLP's parameter count beside the CNN's at the same input size (a CNN's does not depend on it)."""
    from core.models.backbones import create_model  # noqa: PLC0415 (lazy: builds a model, only here)
    from core.models.regimes import count_params  # noqa: PLC0415 (lazy, with it)

    n_classes = len(summary.get("classes") or []) or 5
    px, bb = cfg.data.img_size, cfg.model.backbone
    cnn = count_params(create_model(bb, n_classes, pretrained=False)[0]).total  # one model, not one per regime
    mlp = summary.get("total_params") or mlp_param_count(px, n_classes)
    return (
        f"MLP baseline at {px} px: {mlp:,} parameters; the CNN {bb} has {cnn:,} at any input size "
        f"({mlp / cnn:.1f}x as many in the MLP)."
    )


def cmd_race(args: argparse.Namespace) -> int:
    from core.training.race import run_race  # noqa: PLC0415 (lazy: only this command needs it; keeps `python -m core` quick to start)

    settings = a.settings_from(args)
    listener = TqdmListener(args.quiet)

    def on_run_end(row) -> None:
        listener.close()
        print(json.dumps(row), flush=True)

    try:
        with CtrlC() as stop:
            result = run_race(
                args.data,
                args.backbone,
                args.budget_minutes,
                settings,
                args.precision,
                on_event=listener,
                on_progress=listener.progress,
                on_run_end=on_run_end,
                should_stop=stop.is_set,
                baselines=tuple(BASELINES) if args.baselines else (),
                augment=args.augment,
            )
    finally:
        listener.close()
    if args.baselines:
        print(f"note: {BASELINES_NOT_PLANNED}", file=sys.stderr)
    print(
        f"race: {result['wall_seconds']:.0f} s (predicted {result['predicted_seconds']:.0f} s, budget "
        f"{result['budget_seconds']:.0f} s)",
        file=sys.stderr,
    )
    print(json.dumps({k: result[k] for k in ("budget_seconds", "wall_seconds", "predicted_seconds", "runs")}))
    return 0 if all(r["status"] in ("finished", "interrupted") for r in result["runs"]) else 1
