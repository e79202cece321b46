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
* ``scale`` (``--scale``, not run by default) — 10k to 1M deep vectors: the flowers' real EfficientNet-Lite0
  features (embedded once by the product's own index, cached as .npy under ``--cache``) extended with
  synthetic vectors drawn around them. Per size and store (FAISS flat, HNSW with the product's parameters,
  IVF-Flat / IVF-SQ8 / IVF-PQ, Milvus Lite): build time, serialized bytes (or disk use), single-query
  latency p50/p95 at k=10, recall@10 against exact search; then where exact search stops being fast enough.

Run: ``python benchmarks/bench_retrieval.py [build|incremental|query|quality|hnsw ...] [--data DIR]``;
``python benchmarks/bench_retrieval.py --scale --sizes 10000,100000,1000000 [--dim-from lite0|resnet18]
[--stores flat,hnsw,ivf,ivfsq8,ivfpq,milvus-lite] [--queries 200] [--cache DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import faiss
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import machine  # noqa: E402
from core.cli.progress import TqdmListener  # noqa: E402
from core.models.device import cpu_isa  # noqa: E402
from core.retrieval.embedders import EmbedderConfig, get_embedder  # noqa: E402
from core.retrieval.index import IndexConfig, clear_memory_cache, open_index, tune_ef_search  # noqa: E402
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


# ------------------------------------------------------------------------------------------------ scale

SCALE_STORES = ("flat", "hnsw", "ivf", "ivfsq8", "ivfpq", "milvus-lite")
SCALE_K = 10
SCALE_CHUNK = 65_536  # synthetic vectors are drawn in seeded chunks: a set's first n rows are the smaller set
# (within a run, and across runs up to the larger one's last whole chunk)
SCALE_WARMUP = 10  # queries run before the timed ones (synthetic draws, not the measured queries)
HNSW_EF_SWEEP = (16, 32, 64, 128, 256)
IVF_NPROBE_SWEEP = (4, 8, 16, 32, 64, 128, 256)
MILVUS_BATCH = 5_000
THREADS = faiss.omp_get_max_threads()  # FAISS's default, which the product keeps: all cores


def lscpu_isa() -> str:
    """What ``lscpu | grep -o 'avx512_bf16\\|avx2' | sort -u`` prints, on one line."""
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return cpu_isa()
    return " ".join(sorted({f for f in ("avx512_bf16", "avx2") if f in flags.split()})) or cpu_isa()


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _bar(total: int, desc: str, unit: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, leave=False, dynamic_ncols=True)


def real_deep_features(root: Path, cache: Path, dim_from: str) -> Tuple[np.ndarray, str]:
    """The flowers' deep vectors as the product's deep index holds them (L2-normalised EfficientNet-Lite0 fp32
    features, from :func:`open_index`), cached as .npy; for ``dim_from="resnet18"``, projected to 512-d."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"flowers-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}-efficientnet_lite0-fp32.npy"
    if path.is_file():
        real = np.load(path)
        how = f"read from {path}"
    else:
        t = time.perf_counter()
        listener = TqdmListener(quiet=False)
        emb = EmbedderConfig(backbone="efficientnet_lite0", precision="fp32")
        settings = Settings(cache_dir=cache / "app-cache", runs_dir=cache / "runs")
        index, report = open_index(root, "deep", emb, settings=settings, on_progress=listener.progress)
        listener.close()
        real = np.ascontiguousarray(index.vectors(), dtype=np.float32)
        np.save(path, real)
        how = f"{report.embedder}, {report.action} by open_index in {time.perf_counter() - t:.0f} s, saved to {path}"
    what = f"{len(real):,} real flower photos, EfficientNet-Lite0 fp32 features ({real.shape[1]}-d), {how}"
    if dim_from == "resnet18":
        q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((real.shape[1], 512)))
        real = np.ascontiguousarray(real @ q.astype(np.float32))
        faiss.normalize_L2(real)
        what += (
            "; projected to 512-d (ResNet18's dimension) by a fixed random orthonormal matrix (seed 0) and "
            "re-normalised: Lite0 features in 512 dimensions, not ResNet18's features (its weights are not here)"
        )
    return real, what


def _nn_distance(x: np.ndarray, base: np.ndarray, skip_self: bool) -> np.ndarray:
    """Euclidean distance from each row of ``x`` to its nearest row of ``base`` (unit vectors: √(2 − 2 cos))."""
    sims, _ = faiss.knn(x, base, 2 if skip_self else 1, metric=faiss.METRIC_INNER_PRODUCT)
    return np.sqrt(np.clip(2 - 2 * sims[:, -1], 0, None))


class ScaleVectors:
    """Real deep vectors extended to any size with synthetic ones drawn around them.

    ``queries`` real photos are held out (queries that are in no index). The other real vectors (the
    *parents*) are the first rows of every set; synthetic row ``i`` is ``normalise(p + s · r_p · z @ B)``: a
    random parent ``p``, Gaussian noise ``z @ B`` with the parents' own covariance (the principal directions
    and spreads of the real features), scaled by ``r_p`` (the parent's distance to its nearest other real
    photo over the median of those: photos in dense regions get tight clouds) and one global ``s``, chosen
    by bisection so that the median distance from a synthetic vector to its nearest real photo equals the
    median distance from a real photo to its nearest other one."""

    def __init__(self, real: np.ndarray, queries: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        held = rng.choice(len(real), size=queries, replace=False)
        mask = np.ones(len(real), dtype=bool)
        mask[held] = False
        self.seed = seed
        self.queries = np.ascontiguousarray(real[held])
        self.parents = np.ascontiguousarray(real[mask])
        self.dim = real.shape[1]
        centred = self.parents - self.parents.mean(0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        self.basis = np.ascontiguousarray((sv[:, None] / np.sqrt(len(centred) - 1)) * vt, dtype=np.float32)
        self.real_nn = _nn_distance(self.parents, self.parents, skip_self=True)
        floor = np.quantile(self.real_nn, 0.05)  # near-duplicate photos would get no spread at all
        self.spread = (np.maximum(self.real_nn, floor) / np.median(self.real_nn)).astype(np.float32)
        self.scale = 1.0
        self.scale = self._calibrate()
        self.synthetic_nn = _nn_distance(self._draw(np.random.default_rng([seed, 1]), 4000), self.parents, False)

    def _draw(self, rng: np.random.Generator, n: int, noise_scale: Optional[float] = None) -> np.ndarray:
        parent = rng.integers(len(self.parents), size=n)
        z = rng.standard_normal((n, len(self.basis)), dtype=np.float32)
        s = self.scale if noise_scale is None else noise_scale
        x = self.parents[parent] + (s * self.spread[parent])[:, None] * (z @ self.basis)
        faiss.normalize_L2(x)
        return x

    def _calibrate(self) -> float:
        target = float(np.median(self.real_nn))
        lo, hi = 0.0, 4.0
        for _ in range(30):
            mid = (lo + hi) / 2
            got = np.median(
                _nn_distance(self._draw(np.random.default_rng([self.seed, 2]), 2000, mid), self.parents, False)
            )
            lo, hi = (mid, hi) if got < target else (lo, mid)
        return (lo + hi) / 2

    def warmup(self, n: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 3]), n)

    def fill(self, n: int) -> np.ndarray:
        """The first ``n`` vectors: the parents, then synthetic ones (chunk ``c`` drawn with seed (seed, 10, c))."""
        out = np.empty((n, self.dim), dtype=np.float32)
        m = min(n, len(self.parents))
        out[:m] = self.parents[:m]
        with _bar(n - m, "drawing synthetic vectors", "vec") as bar:
            for c, start in enumerate(range(m, n, SCALE_CHUNK)):
                stop = min(n, start + SCALE_CHUNK)
                out[start:stop] = self._draw(np.random.default_rng([self.seed, 10, c]), stop - start)
                bar.update(stop - start)
        return out

    def describe(self) -> str:
        q = lambda a: ", ".join(f"{v:.3f}" for v in np.quantile(a, [0.1, 0.5, 0.9]))  # noqa: E731
        return (
            f"{len(self.parents):,} real vectors first, then synthetic ones: normalise(random real vector + "
            f"{self.scale:.3f} × its spread × Gaussian noise with the real features' covariance); queries: "
            f"{len(self.queries)} held-out real photos, in no index. Distance to the nearest real photo "
            f"(p10, p50, p90): real photos {q(self.real_nn)}; synthetic vectors {q(self.synthetic_nn)}"
        )


def serialized_bytes(index: faiss.Index) -> int:
    """Length of ``faiss.serialize_index(index)``, counted while writing (no second copy in memory)."""
    total = [0]

    def count(b: bytes) -> None:
        total[0] += len(b)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer  # flushes
    return total[0]


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def time_queries(search, queries: np.ndarray, warm: np.ndarray, desc: str) -> Tuple[List[float], np.ndarray]:
    """Seconds of each single query (k = 10, one at a time, after a warm-up) and the ids found."""
    for q in warm:
        search(q[None])
    seconds, found = [], np.full((len(queries), SCALE_K), -1, dtype=np.int64)
    for i, q in enumerate(tqdm(queries, desc=desc, unit="query", file=sys.stderr, leave=False, dynamic_ncols=True)):
        t = time.perf_counter()
        ids = search(q[None])
        seconds.append(time.perf_counter() - t)
        found[i, : len(ids)] = ids[:SCALE_K]
    return seconds, found


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def _faiss_add(index: faiss.Index, x: np.ndarray, desc: str, chunk: int) -> None:
    with _bar(len(x), desc, "vec") as bar:
        for start in range(0, len(x), chunk):
            index.add(x[start : start + chunk])
            bar.update(min(chunk, len(x) - start))


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def nlist_for(n: int) -> int:
    """IVF lists: the power of two nearest 4·√n (FAISS's rule of thumb), at least 64."""
    return max(64, 2 ** round(np.log2(4 * np.sqrt(n))))


class FaissStores:
    """Builds the FAISS stores of one size; the IVF stores share one coarse quantizer (each is charged its time)."""

    def __init__(self, x: np.ndarray, args):
        self.x, self.n, self.d = x, len(x), x.shape[1]
        self.ef_search = _ints(args.ef_search)
        self.nprobe = _ints(args.nprobe)
        self.hnsw_m, self.ef_construction = args.hnsw_m, args.ef_construction
        self.nlist = nlist_for(self.n)
        self.tuned_ef = IndexConfig().hnsw_ef_search  # set by the HNSW build: the breadth the product would pick
        self._coarse: Optional[Tuple[faiss.Index, float, np.ndarray]] = None

    def coarse(self) -> Tuple[faiss.Index, float, np.ndarray]:
        """The trained IVF quantizer (spherical k-means, 10 iterations, on a sample of 40 vectors per list)."""
        if self._coarse is None:
            rng = np.random.default_rng(0)
            sample = self.x[np.sort(rng.choice(self.n, size=min(self.n, 40 * self.nlist), replace=False))]
            quantizer = faiss.IndexFlatIP(self.d)
            ivf = faiss.IndexIVFFlat(quantizer, self.d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            print(f"(training the IVF{self.nlist} coarse quantizer on {len(sample):,} vectors…)", flush=True)
            t = time.perf_counter()
            ivf.train(sample)
            self._coarse = (quantizer, time.perf_counter() - t, sample)
        return self._coarse

    def build(self, store: str) -> Tuple[faiss.Index, float, str, str, Sequence]:
        """(index, build seconds, what it is, the swept parameter, its values)."""
        chunk = max(10_000, self.n // 50)
        ip = faiss.METRIC_INNER_PRODUCT
        if store == "flat":
            index = faiss.IndexFlatIP(self.d)
            t = time.perf_counter()
            _faiss_add(index, self.x, "flat: adding", chunk)
            threads = faiss.omp_get_max_threads()  # the product's setting (FAISS's default), then one thread
            return (
                index,
                time.perf_counter() - t,
                "IndexFlatIP (exact)",
                "threads",
                [threads, 1] if threads > 1 else [1],
            )
        if store == "hnsw":
            cfg = IndexConfig()
            m, ef_c = self.hnsw_m or cfg.hnsw_m, self.ef_construction or cfg.hnsw_ef_construction
            index = faiss.IndexHNSWFlat(self.d, m, ip)  # as core.retrieval.index builds it
            index.hnsw.efConstruction = ef_c
            t = time.perf_counter()
            _faiss_add(index, self.x, f"HNSW{m}: building the graph", chunk)
            build_s = time.perf_counter() - t
            same = (m, ef_c) == (cfg.hnsw_m, cfg.hnsw_ef_construction)
            what = f"IndexHNSWFlat M {m}, efConstruction {ef_c} ({'' if same else 'not '}the product default)"
            t = time.perf_counter()
            tuned = tune_ef_search(index, ip, cfg)  # what core.retrieval.index does after every HNSW build
            self.tuned_ef = tuned["ef_search"]
            print(
                f"(the product's tuning chose efSearch {self.tuned_ef}: recall@10 {tuned['recall']:.3f} on "
                f"{tuned['queries']} of the index's own vectors, target {cfg.target_recall}; "
                f"{time.perf_counter() - t:.1f} s)",
                flush=True,
            )
            return index, build_s, what, "efSearch", sorted(set(self.ef_search) | {self.tuned_ef})
        quantizer, coarse_s, sample = self.coarse()
        if store == "ivf":
            index = faiss.IndexIVFFlat(quantizer, self.d, self.nlist, ip)
            what = f"IVF{self.nlist},Flat"
        elif store == "ivfsq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.d, self.nlist, faiss.ScalarQuantizer.QT_8bit, ip)
            what = f"IVF{self.nlist},SQ8 (1 byte per dimension)"
        elif store == "ivfpq":
            m = self.d // 8
            index = faiss.IndexIVFPQ(quantizer, self.d, self.nlist, m, 8, ip)
            what = f"IVF{self.nlist},PQ{m}x8 ({m} bytes per vector, no re-ranking)"
        else:
            raise ValueError(store)
        t = time.perf_counter()
        index.train(sample)  # the coarse quantizer is trained already: only the codes' own training
        _faiss_add(index, self.x, f"{store}: assigning and adding", chunk)
        seconds = coarse_s + time.perf_counter() - t
        sweep = [p for p in self.nprobe if p <= self.nlist]
        return index, seconds, what + f" (coarse k-means {coarse_s:.0f} s of it)", "nprobe", sweep


def milvus_lite_store(x: np.ndarray, folder: Path):
    """A Milvus Lite collection (FLAT index, metric IP) on a file in ``folder``, filled in batches.
    Returns (client, build seconds, disk bytes, search function)."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(folder / "scale.db"))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=x.shape[1])
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    client.create_collection("scale", schema=schema, index_params=params)
    t = time.perf_counter()
    with _bar(len(x), "Milvus Lite: inserting", "vec") as bar:
        for start in range(0, len(x), MILVUS_BATCH):
            stop = min(len(x), start + MILVUS_BATCH)
            client.insert("scale", [{"id": i, "vector": x[i]} for i in range(start, stop)])
            bar.update(stop - start)
    client.flush("scale")
    client.load_collection("scale")
    seconds = time.perf_counter() - t

    def search(q: np.ndarray) -> np.ndarray:
        hits = client.search("scale", data=q, limit=SCALE_K, search_params={"metric_type": "IP"}, output_fields=["id"])
        return np.array([h["id"] for h in hits[0]], dtype=np.int64)

    return client, seconds, disk_bytes(folder / "scale.db"), search


def _estimate(history: List[dict], n: int) -> Optional[dict]:
    """Seconds to build and query one store at ``n`` vectors from its last two measured sizes (power law,
    exponent at least 1 for the build and the exact stores' queries)."""
    if not history:
        return None
    last = history[-1]
    build_exp = query_exp = 1.0
    if len(history) >= 2:
        prev = history[-2]
        span = np.log(last["n"] / prev["n"])
        build_exp = max(1.0, np.log(max(last["build_s"], 1e-3) / max(prev["build_s"], 1e-3)) / span)
        query_exp = np.log(last["query_s"] / prev["query_s"]) / span
    f = n / last["n"]
    return {"build_s": last["build_s"] * f**build_exp, "query_s": last["query_s"] * f**query_exp}


def bench_scale(root: Path, tmp: Path, args) -> None:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    flat_sizes = sorted(int(s) for s in args.flat_sizes.split(",")) if args.flat_sizes else []
    stores = [s.strip() for s in args.stores.split(",")]
    unknown = set(stores) - set(SCALE_STORES)
    if unknown:
        raise SystemExit(f"unknown store(s) {sorted(unknown)}; choose from {', '.join(SCALE_STORES)}")
    isa = lscpu_isa()
    queries_n = args.queries or 200
    real, what = real_deep_features(root, Path(args.cache).expanduser(), args.dim_from)
    vectors = ScaleVectors(real, queries_n, args.seed)
    del real
    queries, warm = vectors.queries, vectors.warmup(SCALE_WARMUP)
    print(f"\nvectors: {what}")
    print(f"sets: {vectors.describe()}")
    print(
        f"ISA ({'lscpu'}): {isa}; FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads (the "
        f"product leaves FAISS's default: all cores); k = {SCALE_K}; {len(queries)} timed single queries after "
        f"{SCALE_WARMUP} warm-up ones; load average now {load_avg()}",
        flush=True,
    )
    x_all = vectors.fill(max(sizes + flat_sizes))
    rows: List[dict] = []
    history: Dict[str, List[dict]] = {s: [] for s in stores}
    for n in sizes:
        x = x_all[:n]  # a view: every size is a prefix of the largest set
        t = time.perf_counter()
        top, truth = faiss.knn(queries, x, SCALE_K, metric=faiss.METRIC_INNER_PRODUCT)
        gt_s = time.perf_counter() - t
        dist = np.sqrt(np.clip(2 - 2 * top, 0, None))
        quantiles = lambda a: ", ".join(f"{v:.3f}" for v in np.quantile(a, [0.1, 0.5, 0.9]))  # noqa: E731
        print(
            f"\n### {n:,} vectors × {x.shape[1]} (ISA {isa}) — exact top-{SCALE_K} of the queries in {gt_s:.1f} s; "
            f"distance (p10, p50, p90) to their nearest vector {quantiles(dist[:, 0])}, to their "
            f"{SCALE_K}th {quantiles(dist[:, -1])}",
            flush=True,
        )
        faiss_stores = FaissStores(x, args)
        for store in stores:
            est = _estimate(history[store], n)
            if est and (est["build_s"] + est["query_s"]) / 60 > args.max_minutes:
                print(
                    f"{store}: skipped at {n:,}: estimated {est['build_s'] / 60:.0f} min to build and "
                    f"{est['query_s'] / 60:.0f} min to query from the measured trend ("
                    + "; ".join(
                        f"{h['n']:,}: build {h['build_s']:.1f} s, p50 {h['p50_ms']:.1f} ms" for h in history[store]
                    )
                    + f"), over --max-minutes {args.max_minutes:g}",
                    flush=True,
                )
                rows.append(emit(section="scale", n=n, store=store, skipped=True, estimate=est, isa=isa))
                continue
            load_before = load_avg()
            t0 = time.perf_counter()
            if store == "milvus-lite":
                folder = tmp / f"milvus-{n}"
                folder.mkdir()
                client, build_s, size, search = milvus_lite_store(x, folder)
                what_store, param, sweep = "Milvus Lite on a file, FLAT index, metric IP", "", [None]
                setters = {None: lambda: None}
            else:
                index, build_s, what_store, param, sweep = faiss_stores.build(store)
                size = serialized_bytes(index)

                def search(q: np.ndarray, index=index) -> np.ndarray:
                    return index.search(q, SCALE_K)[1][0]

                def setter(v, index=index, param=param):
                    if param == "threads":
                        faiss.omp_set_num_threads(v)
                    elif param == "efSearch":
                        index.hnsw.efSearch = v
                    elif param == "nprobe":
                        index.nprobe = v

                setters = {v: (lambda v=v: setter(v)) for v in sweep}
            query_s = 0.0
            for v in sweep:
                setters[v]()
                label = f"{param} {v}" if param else ""
                tq = time.perf_counter()
                seconds, found = time_queries(search, queries, warm, f"{store} {n:,} {label}: querying")
                query_s += time.perf_counter() - tq
                ms = 1000 * np.array(seconds)
                default = (
                    {"hnsw": faiss_stores.tuned_ef, "flat": THREADS}.get(store) == v
                    and "not the product" not in what_store
                ) or not param
                rows.append(
                    emit(
                        section="scale",
                        n=n,
                        dim=x.shape[1],
                        store=store,
                        index=what_store,
                        param=label,
                        default=default,
                        build_s=build_s,
                        bytes=size,
                        p50_ms=float(np.percentile(ms, 50)),
                        p95_ms=float(np.percentile(ms, 95)),
                        recall_at_10=recall_at_k(found, truth),
                        queries=len(queries),
                        load=f"{load_before} → {load_avg()}",
                        isa=isa,
                    )
                )
            faiss.omp_set_num_threads(THREADS)
            if store == "milvus-lite":
                client.close()
                shutil.rmtree(folder, ignore_errors=True)
            else:
                del index, search, setter, setters  # they all hold the index: free it before the next store
            p50s = [r["p50_ms"] for r in rows[-len(sweep) :]]
            history[store].append({"n": n, "build_s": build_s, "query_s": query_s, "p50_ms": float(np.median(p50s))})
            print(f"({store} at {n:,}: {time.perf_counter() - t0:.0f} s in all)", flush=True)
        del faiss_stores
        _scale_table([r for r in rows if r["n"] == n], n, x.shape[1], isa)
    _threshold(x_all, queries, warm, flat_sizes, rows, isa, args.budget_ms)
    for n in [10 * max(sizes)] if max(sizes) < 1_000_000 else []:
        print(f"\nestimates at {n:,} vectors from the measured trend (not measured):")
        for store in stores:
            est = _estimate(history[store], n)
            if est:
                print(
                    f"- {store}: build ~{est['build_s'] / 60:.1f} min, {len(queries)} queries per setting ~"
                    f"{est['query_s'] / 60:.1f} min in all"
                )
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


def _scale_table(rows: List[dict], n: int, dim: int, isa: str) -> None:
    print(
        f"\n| {n:,} × {dim} (ISA {isa}) | index | setting | build s | bytes | p50 ms | p95 ms | recall@10 "
        "| load 1/5/15 min |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if r.get("skipped"):
            e = r["estimate"]
            print(
                f"| {r['store']} | not run: estimated build {e['build_s'] / 60:.0f} min, queries "
                f"{e['query_s'] / 60:.0f} min | | | | | | | |"
            )
            continue
        setting = r["param"] + (" (default)" if r["default"] and r["param"] else "")
        print(
            f"| {r['store']} | {r['index']} | {setting} | {r['build_s']:.1f} | {r['bytes']:,} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['recall_at_10']:.3f} | {r['load']} |"
        )
    print(flush=True)


def _threshold(
    x_all: np.ndarray,
    queries: np.ndarray,
    warm: np.ndarray,
    flat_sizes: List[int],
    rows: List[dict],
    isa: str,
    budget_ms: float,
) -> None:
    """Exact search's p95 against the number of vectors (the sizes above plus ``flat_sizes``), a straight-line
    fit, and where it crosses ``budget_ms`` and half of it: where the approximate index should take over."""
    dim = x_all.shape[1]
    settings = [THREADS, 1] if THREADS > 1 else [1]
    flat = {(r["n"], r["param"]): r for r in rows if r["store"] == "flat" and not r.get("skipped")}
    for n in flat_sizes:
        if all((n, f"threads {t}") in flat for t in settings):
            continue
        index = faiss.IndexFlatIP(dim)
        index.add(x_all[:n])
        for threads in settings:
            faiss.omp_set_num_threads(threads)
            load_before = load_avg()
            seconds, _ = time_queries(
                lambda q, index=index: index.search(q, SCALE_K)[1][0], queries, warm, f"flat {n:,} {threads}T: querying"
            )
            ms = 1000 * np.array(seconds)
            flat[(n, f"threads {threads}")] = emit(
                section="scale-threshold",
                n=n,
                dim=dim,
                store="flat",
                param=f"threads {threads}",
                p50_ms=float(np.percentile(ms, 50)),
                p95_ms=float(np.percentile(ms, 95)),
                load=f"{load_before} → {load_avg()}",
                isa=isa,
            )
        faiss.omp_set_num_threads(THREADS)
        del index
    if not flat:
        return  # exact search was not timed (--stores without flat, no --flat-sizes)
    hnsw = {r["n"]: r for r in rows if r["store"] == "hnsw" and r.get("default")}
    sizes = sorted({n for n, _ in flat})
    print(f"\n### Exact against approximate search by size ({dim}-d, ISA {isa}, k = {SCALE_K}, single queries)")
    heads = " | ".join(f"flat {t}T p50 ms | flat {t}T p95 ms" for t in settings)
    print(f"\n| vectors | {heads} | HNSW efSearch 128 p95 ms | HNSW recall@10 | HNSW build s | load |")
    print("|---:|" + "---:|" * (2 * len(settings) + 3) + "---|")
    for n in sizes:
        cells = " | ".join(
            f"{flat[(n, f'threads {t}')]['p50_ms']:.2f} | {flat[(n, f'threads {t}')]['p95_ms']:.2f}" for t in settings
        )
        h = hnsw.get(n)
        hn = f"{h['p95_ms']:.2f} | {h['recall_at_10']:.3f} | {h['build_s']:.1f}" if h else " | | "
        print(f"| {n:,} | {cells} | {hn} | {flat[(n, f'threads {settings[0]}')]['load']} |")
    for t in settings:
        p95 = [flat[(n, f"threads {t}")]["p95_ms"] for n in sizes]
        for budget in (budget_ms / 2, budget_ms):
            print(f"- flat, {t} OpenMP thread(s), p95 under {budget:g} ms: {_crossing(sizes, p95, budget, dim)}")


def _crossing(sizes: List[int], p95: List[float], budget: float, dim: int) -> str:
    """Up to how many vectors the measured p95 stays under ``budget``: interpolated between the last size under
    it and the first one over it (the measurements are noisy on a shared machine: a later size may dip back)."""
    over = [i for i, v in enumerate(p95) if v > budget]
    if not over:
        return f"at every measured size (up to {sizes[-1]:,})"
    i = over[0]
    if i == 0:
        return f"at none of the measured sizes ({sizes[0]:,}: {p95[0]:.1f} ms)"
    n0, n1, v0, v1 = sizes[i - 1], sizes[i], p95[i - 1], p95[i]
    n = n0 + (budget - v0) * (n1 - n0) / (v1 - v0)
    return (
        f"up to about {n:,.0f} vectors ({n0:,}: {v0:.1f} ms, {n1:,}: {v1:.1f} ms; n × d ≈ {n * dim / 1e6:,.0f} M "
        "floats scanned per query)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sections", nargs="*", default=["build", "incremental", "query", "quality", "hnsw"])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--queries", type=int, default=None, help="queries per measurement (default 50; scale: 200)")
    g = p.add_argument_group("scale (section 'scale', or --scale)")
    g.add_argument("--scale", action="store_true", help="run only the scale section")
    g.add_argument("--sizes", default="10000,100000,1000000", help="index sizes, comma-separated")
    g.add_argument(
        "--dim-from",
        choices=["lite0", "resnet18"],
        default="lite0",
        help="lite0: the 1280-d Lite0 features; resnet18: them projected to 512-d (ResNet18's dimension)",
    )
    g.add_argument("--stores", default=",".join(SCALE_STORES), help=f"some of {', '.join(SCALE_STORES)}")
    g.add_argument("--cache", default=str(Settings.from_env().cache_dir / "bench-scale"), help="real vectors .npy")
    g.add_argument(
        "--flat-sizes", default="5000,20000,50000", help="extra sizes timed with exact search only (threshold)"
    )
    g.add_argument("--budget-ms", type=float, default=20.0, help="query p95 budget for the threshold")
    g.add_argument("--max-minutes", type=float, default=20.0, help="skip a store at a size its trend says takes longer")
    g.add_argument("--ef-search", default=",".join(map(str, HNSW_EF_SWEEP)), help="HNSW efSearch values timed")
    g.add_argument("--nprobe", default=",".join(map(str, IVF_NPROBE_SWEEP)), help="IVF nprobe values timed")
    g.add_argument("--hnsw-m", type=int, default=0, help="HNSW M (default: the product's)")
    g.add_argument("--ef-construction", type=int, default=0, help="HNSW efConstruction (default: the product's)")
    g.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.scale:
        args.sections = ["scale"]
    root = Path(args.data).resolve()
    print(f"# {machine()}; data {root}; load average {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        for section in args.sections:
            t = time.perf_counter()
            print(f"\n## {section}", flush=True)
            {
                "build": lambda: bench_build(root, Path(tmp), args.repeats),
                "incremental": lambda: bench_incremental(root, Path(tmp), args.repeats),
                "query": lambda: bench_query(root, Path(tmp), args.queries or 50),
                "quality": lambda: bench_quality(root, Path(tmp)),
                "hnsw": lambda: bench_hnsw(root, Path(tmp), args.queries or 50),
                "scale": lambda: bench_scale(root, Path(tmp), args),
            }[section]()
            print(f"({section}: {time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
