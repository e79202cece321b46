"""Image-retrieval benchmarks on the real flowers photos (``../shared/data/flower_photos`` by default).

Prints markdown tables (and one JSON line per measurement) for BENCHMARKS.md:

* ``build`` — building each method's index from nothing (fresh cache), and reopening it from disk after a
  restart; deep features on PyTorch bf16 and fp32 and on the automatic frozen-pass runtime (ONNX Runtime where
  it is measured faster), with the precision@10 each reaches.
* ``incremental`` — adding 10 photos to an indexed dataset against building it again from nothing.
* ``query`` — one query as the app runs it (decode + resize + embed the photo, then search), and the search
  alone against a brute-force numpy search over the same vectors, same process, alternating.
* ``quality`` — precision@10 and mAP@10 of each method, leave-one-out over the whole dataset.
* ``hnsw`` — the approximate HNSW index (forced on with a threshold of 0): build time, search time against
  the exact flat index, and recall@10 against it.

Run: ``python benchmarks/bench_retrieval.py [build|incremental|query|quality|hnsw ...] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import machine  # noqa: E402
from core.retrieval.embedders import EmbedderConfig, get_embedder  # noqa: E402
from core.retrieval.index import IndexConfig, clear_memory_cache, open_index  # noqa: E402
from core.retrieval.methods import METHODS  # noqa: E402
from core.retrieval.metrics import evaluate_index  # noqa: E402
from core.settings import Settings  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"
# the methods that need nothing trained first (triplet needs a head: python -m core train-embedder)
UNTRAINED = [method for method in METHODS if method != "triplet"]


def emit(**row) -> dict:
    print(json.dumps(row), flush=True)
    return row


def fresh_settings(tmp: Path, name: str) -> Settings:
    return Settings(cache_dir=tmp / name, runs_dir=tmp / "runs")


def timed_open(root, method, settings, emb=None, idx=None):
    clear_memory_cache()
    t = time.perf_counter()
    index, report = open_index(root, method, emb, idx, settings)
    return time.perf_counter() - t, index, report


def bench_build(root: Path, tmp: Path, repeats: int) -> None:
    t = time.perf_counter()
    get_embedder("deep", EmbedderConfig(), Settings.from_env())
    print(f"\n(loading the deep model once, excluded below: {time.perf_counter() - t:.1f} s)")
    rows = []
    variants = [
        ("l1", None, "auto"),
        ("cosine", None, "auto"),
        ("deep", "bf16", "torch"),
        ("deep", "fp32", "torch"),
        ("deep", "fp32", "auto"),
    ]
    for method, precision, runtime in variants:
        emb = EmbedderConfig(precision=precision or "auto", runtime=runtime)
        if precision:  # load this precision's model (and export it) outside the timing
            runtime = get_embedder("deep", emb, Settings.from_env()).frozen.description
        builds, reopens = [], []
        for r in range(repeats):
            settings = fresh_settings(tmp, f"build-{method}-{precision}-{r}")
            s, index, report = timed_open(root, method, settings, emb)
            assert report.action == "built"
            builds.append(s)
            s, _, again = timed_open(root, method, settings, emb)
            assert again.action == "reused"
            reopens.append(s)
        quality = evaluate_index(index, 10)
        rows.append(
            emit(
                section="build",
                method=method,
                precision=precision,
                runtime=runtime,
                images=len(index),
                dim=index.embedder.dim,
                build_s=statistics.median(builds),
                builds=builds,
                reopen_s=statistics.median(reopens),
                file_mb=Path(report.path).stat().st_size / 1e6,
                precision_at_10=quality.precision_at_k,
            )
        )
    print("\n| method | vectors | build from nothing s (median) | reopen from disk s | index file MB | precision@10 |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        name = r["method"] + (f" ({r['runtime']})" if r["precision"] else "")
        print(
            f"| {name} | {r['images']:,} × {r['dim']:,} | {r['build_s']:.1f} | {r['reopen_s']:.2f} | "
            f"{r['file_mb']:.0f} | {r['precision_at_10']:.3f} |"
        )
    bf16, fp32, auto = rows[2], rows[3], rows[4]
    print(
        f"\ndeep features against PyTorch fp32: PyTorch bf16 {fp32['build_s'] / bf16['build_s']:.2f}×, "
        f"the automatic choice ({auto['runtime']}) {fp32['build_s'] / auto['build_s']:.2f}× faster"
    )


def _linked_copy(src: Path, dst: Path, leave_out: int) -> list:
    """``dst`` mirrors ``src`` with symlinks, minus the last ``leave_out`` photos of each class (returned)."""
    held = []
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.jpg"))
        (dst / cls.name).mkdir(parents=True)
        for f in files[: len(files) - leave_out]:
            (dst / cls.name / f.name).symlink_to(f)
        held += [(f, dst / cls.name / f.name) for f in files[len(files) - leave_out :]]
    return held


def bench_incremental(root: Path, tmp: Path, repeats: int) -> None:
    rows = []
    for method in UNTRAINED:
        adds, fulls = [], []
        for r in range(repeats):
            data = tmp / f"inc-{method}-{r}"
            held = _linked_copy(root, data, leave_out=2)
            settings = fresh_settings(tmp, f"inc-{method}-{r}")
            timed_open(data, method, settings)
            for f, link in held:
                link.symlink_to(f)
            s, index, report = timed_open(data, method, settings)
            assert report.action == "added" and report.embedded == len(held)
            adds.append(s)
            s, _, report = timed_open(data, method, fresh_settings(tmp, f"inc-full-{method}-{r}"))
            assert report.action == "built"
            fulls.append(s)
        rows.append(
            emit(
                section="incremental",
                method=method,
                added=len(held),
                images=len(index),
                add_s=statistics.median(adds),
                rebuild_s=statistics.median(fulls),
            )
        )
    print("\n| method | images | add 10 photos s | build all again s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['images']:,} | {r['add_s']:.2f} | {r['rebuild_s']:.1f} | "
            f"{r['rebuild_s'] / r['add_s']:.0f}× |"
        )


def _brute_force(vectors: np.ndarray, q: np.ndarray, k: int, l1: bool) -> np.ndarray:
    scores = np.abs(vectors - q).sum(1) if l1 else -(vectors @ q)
    top = np.argpartition(scores, k)[:k]
    return top[np.argsort(scores[top], kind="stable")]


def bench_query(root: Path, tmp: Path, queries: int) -> None:
    settings = fresh_settings(tmp, "query")
    rows = []
    for method in UNTRAINED:
        index, _ = open_index(root, method, settings=settings)
        rng = np.random.default_rng(0)
        picks = rng.choice(len(index), size=queries, replace=False)
        index.search(root / index.files[int(picks[0])], 8)  # warm-up
        full, faiss_only, numpy_only = [], [], []
        vectors = index.vectors()
        l1 = method == "l1"
        for i in picks:
            f = index.files[int(i)]
            result = index.search(root / f, 8, exclude_file=f)
            full.append(result.seconds)
            q = index.embed(root / f)
            t = time.perf_counter()
            index.search_vectors(q, 8)
            faiss_only.append(time.perf_counter() - t)
            t = time.perf_counter()
            _brute_force(vectors, q[0], 8, l1)
            numpy_only.append(time.perf_counter() - t)
        rows.append(
            emit(
                section="query",
                method=method,
                images=len(index),
                queries=queries,
                query_ms=1000 * statistics.median(full),
                faiss_ms=1000 * statistics.median(faiss_only),
                numpy_ms=1000 * statistics.median(numpy_only),
            )
        )
    print(
        f"\n| method | whole query ms (median of {queries}) | FAISS search ms | numpy brute force ms | FAISS speed-up |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['query_ms']:.1f} | {r['faiss_ms']:.2f} | {r['numpy_ms']:.2f} | "
            f"{r['numpy_ms'] / r['faiss_ms']:.1f}× |"
        )


def bench_quality(root: Path, tmp: Path, k: int = 10) -> None:
    settings = fresh_settings(tmp, "quality")
    rows = []
    for method in UNTRAINED:
        index, _ = open_index(root, method, settings=settings)
        q = evaluate_index(index, k)
        rows.append(emit(section="quality", embedder=index.embedder.description, **q.as_dict()))
    print(f"\n| method | embedder | precision@{k} | mAP@{k} | leave-one-out s |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['embedder']} | {r['precision_at_k']:.3f} | {r['map_at_k']:.3f} | "
            f"{r['seconds']:.1f} |"
        )
    print(f"\nrandom picks: precision@{k} {rows[0]['chance']:.3f}")


def bench_hnsw(root: Path, tmp: Path, queries: int) -> None:
    rows = []
    approx = IndexConfig(approx_threshold=0)
    for method in UNTRAINED:
        settings = fresh_settings(tmp, f"hnsw-{method}")
        exact, _ = open_index(root, method, settings=fresh_settings(tmp, f"exact-{method}"))
        vectors = exact.vectors()
        t = time.perf_counter()
        index, report = open_index(root, method, index_cfg=approx, settings=settings)
        build = time.perf_counter() - t
        picks = np.random.default_rng(1).choice(len(index), size=queries, replace=False)
        flat_t, hnsw_t = [], []
        for i in picks:
            q = vectors[int(i) : int(i) + 1]
            t = time.perf_counter()
            exact.search_vectors(q, 10)
            flat_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.search_vectors(q, 10)
            hnsw_t.append(time.perf_counter() - t)
        rows.append(
            emit(
                section="hnsw",
                method=method,
                build_s=build,
                embed_and_graph_s=report.seconds,
                flat_ms=1000 * statistics.median(flat_t),
                hnsw_ms=1000 * statistics.median(hnsw_t),
                recall=report.recall,
            )
        )
    print(
        "\n| method | build s (embedding + graph + recall check) | flat search ms | HNSW search ms "
        "| recall@10 vs exact |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['build_s']:.1f} | {r['flat_ms']:.2f} | {r['hnsw_ms']:.2f} | "
            f"{r['recall']['recall']:.3f} ({r['recall']['queries']} queries) |"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sections", nargs="*", default=["build", "incremental", "query", "quality", "hnsw"])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--queries", type=int, default=50)
    args = p.parse_args()
    root = Path(args.data).resolve()
    print(f"# {machine()}; data {root}")
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        for section in args.sections:
            t = time.perf_counter()
            print(f"\n## {section}", flush=True)
            {
                "build": lambda: bench_build(root, Path(tmp), args.repeats),
                "incremental": lambda: bench_incremental(root, Path(tmp), args.repeats),
                "query": lambda: bench_query(root, Path(tmp), args.queries),
                "quality": lambda: bench_quality(root, Path(tmp)),
                "hnsw": lambda: bench_hnsw(root, Path(tmp), args.queries),
            }[section]()
            print(f"({section}: {time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
