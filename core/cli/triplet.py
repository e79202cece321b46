"""``python -m core train-embedder``: train the ``triplet`` method's projection head on a dataset's cached deep
features (:mod:`core.retrieval.triplet`), and say how it does on held-out photos against the deep features.

Same conventions as every command: progress on stderr, the last line on stdout is JSON, user mistakes exit with
status 2 and a plain message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import args as a
from core.cli.progress import TqdmListener
from core.models.backbones import BACKBONES
from core.models.device import PRECISIONS
from core.settings import Settings


def add_parsers(sub) -> None:
    t = sub.add_parser(
        "train-embedder",
        help="train the triplet method's projection head on a dataset's cached deep features (seconds)",
        description="Fit a small head on the frozen backbone's features of the training split with a triplet loss "
        "(online semi-hard mining), then measure precision@10 and mAP@10 of the deep features and of the head on "
        "the held-out test photos. The head becomes the 'triplet' method of index, search and retrieval-eval.",
    )
    a.add_data(t)
    t.add_argument(
        "--backbone",
        default="auto",
        choices=["auto", *BACKBONES],
        help="the ImageNet backbone whose features it starts from (default auto: as the deep method picks)",
    )
    t.add_argument("--epochs", type=a.positive_int, default=None, help="passes over the training photos")
    t.add_argument("--seed", type=a.nonneg_int, default=0, help="the split, the initial weights and the batches")
    t.add_argument("--miner", choices=["semihard", "hard", "all"], default=None, help="which triplets train it")
    t.add_argument("--margin", type=a.positive_float, default=None, help="triplet margin on unit-vector distances")
    t.add_argument("--lr", type=a.positive_float, default=None, help="learning rate (AdamW)")
    t.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="auto",
        help="deep features: auto = bf16 on CPUs with native bf16",
    )
    a.add_quiet(t)
    t.set_defaults(handler=cmd_train_embedder)


def cmd_train_embedder(args: argparse.Namespace) -> int:
    from core.data.sources import resolve_source  # noqa: PLC0415 (lazy: torch and faiss load only for this command; keeps `python -m core` quick to start)
    from core.retrieval.triplet import TripletConfig, train_embedder  # noqa: PLC0415 (lazy, as above)

    cfg = TripletConfig(backbone=args.backbone, precision=args.precision, seed=args.seed)
    for name in ("epochs", "miner", "margin", "lr"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    cfg.validate()
    settings = Settings.from_env()
    bars = TqdmListener(args.quiet)
    try:
        root = Path(resolve_source(args.data, settings, bars.progress)).resolve()
        record = train_embedder(root, cfg, settings, bars.progress)
    finally:
        bars.close()
    s = record.summary
    deep, trip = s["held_out"]["deep"], s["held_out"]["triplet"]
    k = s["k"]
    print(
        f"triplet head {record.id}: fitted in {s['fit_seconds']:.1f} s ({s['epochs']} epochs, {cfg.miner} mining) "
        f"on {s['train_photos']:,} training photos; {s['seconds']:.1f} s in all",
        file=sys.stderr,
    )
    print(f"measured on the {s['protocol']}:", file=sys.stderr)
    for name, q in (("deep", deep), ("deep + triplet", trip)):
        print(f"  {name:15s} precision@{k} {q['precision_at_k']:.3f}  mAP@{k} {q['map_at_k']:.3f}", file=sys.stderr)
    print(f"stored in {record.dir}", file=sys.stderr)
    held = {m: {"precision_at_k": q["precision_at_k"], "map_at_k": q["map_at_k"]} for m, q in (("deep", deep),
            ("triplet", trip))}  # fmt: skip
    print(
        json.dumps(
            {
                "id": record.id,
                "folder": str(record.dir),
                "backbone": record.backbone,
                "k": k,
                "protocol": s["protocol"],
                "held_out": held,
                "train_photos": s["train_photos"],
                "test_photos": s["test_photos"],
                "fit_seconds": s["fit_seconds"],
                "seconds": s["seconds"],
            }
        )
    )
    return 0
