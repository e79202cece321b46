"""``python -m core {index,search,retrieval-eval}``: image retrieval from the command line.

Same conventions as every command: progress on stderr, the last line on stdout is JSON, user mistakes
exit with status 2 and a plain message. ``--method`` may be given more than once; without it, ``index`` and
``retrieval-eval`` take every method there is (``triplet`` once a head is trained: ``train-embedder``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from core.cli import args as a
from core.cli.progress import TqdmListener
from core.errors import ConfigError
from core.models.backbones import BACKBONES
from core.models.device import PRECISIONS
from core.retrieval.methods import METHOD_NAMES
from core.settings import ENV_MILVUS_TOKEN, ENV_MILVUS_URI, ENV_STORE, STORE_KINDS, Settings


def _add_common(p: argparse.ArgumentParser, method_help: str) -> None:
    a.add_data(p)
    p.add_argument("--method", choices=METHOD_NAMES, action="append", help=method_help + "; may be repeated")
    p.add_argument(
        "--backbone",
        default="auto",
        choices=["auto", *BACKBONES],
        help="deep features: ImageNet backbone (default auto: ResNet18 when its weights are on this "
        "machine, else the offline EfficientNet-Lite0)",
    )
    p.add_argument(
        "--run",
        default="",
        help="deep features: a finished training run (folder or id) whose "
        "fine-tuned body replaces the ImageNet backbone",
    )
    p.add_argument(
        "--pixel-size",
        type=a.pixel_size,
        default=None,
        metavar="HxW",
        help="raw-pixel methods: the size images are resized to (default 86x128, as in the notebook)",
    )
    p.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="auto",
        help="deep features: auto = bf16 on CPUs with native bf16",
    )
    p.add_argument(
        "--approx-threshold",
        type=int,
        default=None,
        metavar="N",
        help="use an approximate HNSW index above N images (default 20000)",
    )
    _add_store(p)
    a.add_quiet(p)


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        choices=STORE_KINDS,
        default=None,
        help=f"where the index's vectors live: FAISS files in the cache, or Milvus (default: ${ENV_STORE} or faiss)",
    )
    p.add_argument(
        "--milvus-uri",
        default=None,
        metavar="URI",
        help="Milvus: a Milvus Lite file (a path ending in .db; no server) or a server, http://host:19530 "
        f"(default: ${ENV_MILVUS_URI}, or a Milvus Lite file in the cache)",
    )
    p.add_argument(
        "--milvus-token",
        default=None,
        metavar="TOKEN",
        help=f"Milvus server: user:password or an API key (default: ${ENV_MILVUS_TOKEN})",
    )


def add_parsers(sub) -> None:
    i = sub.add_parser("index", help="build (or reuse) the cached search index of a dataset")
    _add_common(i, "a method (default: all; triplet once trained)")
    i.set_defaults(handler=cmd_index)

    s = sub.add_parser("search", help="the nearest neighbours of a photo in a dataset")
    _add_common(s, "how to compare images (default: deep)")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", help="the photo to search with (JPEG, PNG, WebP…)")
    q.add_argument(
        "--query-id",
        metavar="PATH",
        help="a photo in the index, as its path inside the dataset folder (e.g. daisy/100080576_f52e8ee070_n.jpg, "
        "as search prints it): more like this one",
    )
    s.add_argument("-k", type=a.positive_int, default=8, help="how many neighbours (default 8)")
    s.set_defaults(handler=cmd_search)

    e = sub.add_parser("retrieval-eval", help="precision@k and mAP@k of each method on a labelled dataset")
    _add_common(e, "a method (default: all; triplet once trained)")
    e.add_argument(
        "--queries",
        help="a folder of query images with the same class folders (default: leave-one-out over the dataset; "
        "with triplet, its held-out test photos, for every method)",
    )
    e.add_argument("-k", type=a.positive_int, default=10, help="how many neighbours count (default 10)")
    e.set_defaults(handler=cmd_retrieval_eval)


def _configs(args):
    from core.retrieval.embedders import EmbedderConfig  # noqa: PLC0415 (lazy: only this command needs it; keeps `python -m core` quick to start)
    from core.retrieval.index import IndexConfig  # noqa: PLC0415 (lazy, as above)

    emb = EmbedderConfig(backbone=args.backbone, run=args.run, precision=args.precision)
    if args.pixel_size:
        emb.pixel_height, emb.pixel_width = args.pixel_size
    idx = IndexConfig()
    if args.approx_threshold is not None:
        idx.approx_threshold = args.approx_threshold
    return emb.validate(), idx.validate()


def _available(root: Path, emb, settings: Settings) -> List[str]:
    """Every method that can be opened for ``root``: triplet only once a head is trained (a line says so)."""
    from core.retrieval.projection import latest_embedder  # noqa: PLC0415 (lazy, as in _configs)

    if not emb.run and latest_embedder(root, emb.backbone, settings) is not None:
        return list(METHOD_NAMES)
    why = (
        "it is trained on ImageNet features, not on a run's (--run)"
        if emb.run
        else f"no head is trained for this dataset and backbone yet; python -m core train-embedder --data {root} "
        "trains one (seconds)"
    )
    print(f"triplet left out: {why}", file=sys.stderr)
    return [m for m in METHOD_NAMES if m != "triplet"]


def _open(args, methods: Optional[List[str]], progress) -> list:
    """The opened ``(index, report)`` of each method (given: each once, in order; None: every available one)."""
    from core.data.imagefolder import scan_image_folder  # noqa: PLC0415 (lazy, as in _configs)
    from core.data.sources import resolve_source  # noqa: PLC0415 (lazy, as in _configs)
    from core.retrieval.index import open_index  # noqa: PLC0415 (lazy, as in _configs)
    from core.retrieval.stores import StoreConfig, refusal  # noqa: PLC0415 (lazy, as in _configs)

    settings = Settings.from_env()
    store = StoreConfig.from_settings(settings, args.store, args.milvus_uri, args.milvus_token)
    root = Path(resolve_source(args.data, settings, progress)).resolve()
    emb, idx = _configs(args)
    if store.kind == "milvus" and args.approx_threshold is not None:
        raise ConfigError("--approx-threshold is for the FAISS store: the Milvus store always searches exactly.")
    if methods:
        methods = list(dict.fromkeys(methods))
    else:  # every method by default: those trained here and the store can hold, saying why not the others
        methods = _available(root, emb, settings)
        refused = {method: refusal(store, method, emb) for method in methods}
        for method, why in refused.items():
            if why:
                print(f"{method} left out: {why}", file=sys.stderr)
        methods = [method for method in methods if not refused[method]]
    listing = scan_image_folder(root, min_classes=1)
    return [
        open_index(root, method, emb, idx, settings, on_progress=progress, listing=listing, store=store)
        for method in methods
    ]


def cmd_index(args: argparse.Namespace) -> int:
    bars = TqdmListener(args.quiet)
    try:
        opened = _open(args, args.method, bars.progress)
    finally:
        bars.close()
    for _, report in opened:
        print(report.describe())
    print(json.dumps([report.as_json() for _, report in opened]))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    query = Path(args.query).expanduser() if args.query else None
    if query is not None and not query.is_file():
        raise ConfigError(f"Query image not found: {query}")
    bars = TqdmListener(args.quiet)
    try:
        opened = _open(args, args.method or ["deep"], bars.progress)
    finally:
        bars.close()
    if query is None:
        query = _indexed_photo(opened[0][0], args.query_id)
    found = {}
    for index, _ in opened:
        own = None
        try:
            own = query.resolve().relative_to(index.root.resolve()).as_posix()
        except ValueError:
            pass
        own = own if own is not None and index.id_of(own) is not None else None
        result = index.search(query, args.k, exclude_file=own, name=query.name)
        if own and not found:
            print(f"(the query is in the dataset as {own}; it is left out of its own results)", file=sys.stderr)
        spec = index.method
        if len(opened) > 1:
            print(f"{spec.display}:", file=sys.stderr)
        for n in result.neighbours:
            print(
                f"{n.rank:3d}. {spec.format_score(n.score, index.embedder.dim):>16s}  {n.label:12s} {n.file}",
                file=sys.stderr,
            )
        print(
            f"{spec.display}: {len(result.neighbours)} neighbours in {result.seconds * 1000:.0f} ms; score = "
            f"{spec.score_name}, {'higher' if spec.higher_is_better else 'lower'} is closer",
            file=sys.stderr,
        )
        found[spec.name] = [n.as_json() for n in result.neighbours]
    # one method: its list of neighbours (as always); several: {method: list}
    print(json.dumps(next(iter(found.values())) if len(found) == 1 else found))
    return 0


def _indexed_photo(index, query_id: str) -> Path:
    """The file of the photo ``query_id`` (a path inside the dataset folder) when the index holds it."""
    rel = Path(query_id).as_posix()  # "./daisy/x.jpg" reads as "daisy/x.jpg"
    if index.id_of(rel) is None:
        some = index.files[0] if index.files else "class/photo.jpg"
        raise ConfigError(
            f"'{query_id}' is not a photo in the index of {index.root}. Give its path inside the dataset folder, "
            f"as search prints it (e.g. {some}), or search with any photo file with --query."
        )
    return index.root / rel


def cmd_retrieval_eval(args: argparse.Namespace) -> int:
    from core.retrieval.metrics import evaluate_index  # noqa: PLC0415 (lazy: only this command needs it; keeps `python -m core` quick to start)
    from core.retrieval.triplet import compare_held_out  # noqa: PLC0415 (lazy, as above)

    if args.queries and not Path(args.queries).expanduser().is_dir():
        raise ConfigError(f"Query folder not found: {args.queries}")
    bars = TqdmListener(args.quiet)
    try:
        opened = {index.method.name: index for index, _ in _open(args, args.method, bars.progress)}
        if "triplet" in opened and not args.queries:
            # not leave-one-out over the photos the head was fitted on: its held-out test photos, for every method
            results = compare_held_out(opened, opened["triplet"].embedder.record, args.k)
        else:
            queries = Path(args.queries).expanduser() if args.queries else None
            results = {name: evaluate_index(index, args.k, queries, bars.progress) for name, index in opened.items()}
    finally:
        bars.close()
    k = min(q.k for q in results.values())
    protocol = next(iter(results.values())).protocol
    if protocol.startswith("held-out"):
        record = opened["triplet"].embedder.record
        print(f"every method measured the same way, on triplet head {record.id}'s {protocol}", file=sys.stderr)
    for name, q in results.items():
        print(
            f"{name:7s} precision@{q.k} {q.precision_at_k:.3f}  mAP@{q.k} {q.map_at_k:.3f}  "
            f"({q.queries} queries, {q.protocol.split(':')[0]}, {q.seconds:.1f} s)",
            file=sys.stderr,
        )
    print(json.dumps({"k": k, "protocol": protocol, "methods": {name: q.as_json() for name, q in results.items()}}))
    return 0
