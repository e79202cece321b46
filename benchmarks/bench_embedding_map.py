"""The embedding map on the real flowers photos (``../shared/data/flower_photos`` by default): the issue's target is
"the UMAP map of the 2,919 flowers in 30 s or less the first time (features reused), and instant after".

1. The Search index of the deep features is built, or reused from ``--cache`` (a folder kept between runs, so
   that only the first run embeds): its time is printed apart, since the map reuses those features.
2. ``--repeats`` times, in a **fresh process** (as in a new app server), with the map's cache files removed first:
   * the UMAP map, cold: the network loaded and the index read (nothing embedded: the index file is checked to
     be unchanged), umap-learn imported, numba compiling, the projection, the scores;
   * the same call again (memory) and :func:`cached_map` after the memory caches are dropped (the disk);
   * the UMAP map again once compiled (its file removed): warm;
   * the PCA map (the instant fallback);
   * the 2,919 hover thumbnails (64 px JPEG data URLs), and again (memory);
   then in another fresh process, what the page does first after a restart: :func:`cached_map` of the saved map.
3. Medians, with the ISA beside every figure, and the separation ("neighbours agree": leave-one-out 5-NN
   accuracy on the 2-D map; silhouette) of the ImageNet features, UMAP against PCA.

Run: ``python benchmarks/bench_embedding_map.py [--data DIR] [--cache DIR] [--repeats 3] [--run RUN_DIR ...]``
(``--run``: also map the features of finished training runs, e.g. a fine-tuned one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import machine, table  # noqa: E402
from core.models.device import cpu_isa  # noqa: E402
from core.retrieval.embedders import EmbedderConfig  # noqa: E402
from core.settings import Settings  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "transferlab-bench-embedding-map"
TARGET_SECONDS = 30.0


def settings_for(cache: Path) -> Settings:
    return Settings(cache_dir=cache, runs_dir=cache / "runs")


def config_for(source: str) -> EmbedderConfig:
    return EmbedderConfig(run=source) if source != "imagenet" else EmbedderConfig(backbone="efficientnet_lite0")


def child(root: Path, cache: Path, source: str, restart: bool) -> None:
    """One fresh process: the timings of one repeat, printed as one JSON line. ``restart``: only what the page
    does first after a restart, :func:`cached_map` of the map the previous process saved."""
    t = time.perf_counter()
    from core.explain import embedding_map as em
    from core.retrieval import index as retrieval_index

    row = {"import_s": time.perf_counter() - t}
    settings, cfg = settings_for(cache), config_for(source)
    if restart:
        t = time.perf_counter()
        found = em.cached_map(root, cfg, settings, "umap")
        row["restart_cached_map_s"] = time.perf_counter() - t
        assert found is not None, "the map saved by the previous process was not found"
        t = time.perf_counter()
        em.cached_map(root, cfg, settings, "umap")
        row["cached_map_memory_s"] = time.perf_counter() - t
        print("RESULT " + json.dumps(row), flush=True)
        return

    for method in em.METHODS:  # drawn from nothing each repeat
        em._map_path(root, cfg, method, settings).unlink(missing_ok=True)
    index_file = next(em._map_path(root, cfg, "umap", settings).parent.glob("deep-*.npz"))
    stamp = index_file.stat().st_mtime_ns
    t = time.perf_counter()
    cold = em.embedding_map(root, cfg, settings, "umap")
    row.update(first_map_s=time.perf_counter() - t, umap_project_s=cold.seconds, n=len(cold.files))
    row["index_rewritten"] = index_file.stat().st_mtime_ns != stamp  # embedded something: not "features reused"
    row.update(umap_sep=cold.separation, umap_sil=cold.silhouette, chance=cold.chance)
    index, _ = retrieval_index.open_index(root, "deep", cfg, settings=settings)
    row["features"] = f"{index.embedder.description}, {index.embedder.frozen.description}"

    t = time.perf_counter()
    em.embedding_map(root, cfg, settings, "umap")
    row["again_s"] = time.perf_counter() - t
    em.clear_memory_cache()
    retrieval_index.clear_memory_cache()
    t = time.perf_counter()
    assert em.cached_map(root, cfg, settings, "umap") is not None
    row["cached_map_s"] = time.perf_counter() - t

    em._map_path(root, cfg, "umap", settings).unlink()
    em.clear_memory_cache()
    t = time.perf_counter()
    warm = em.embedding_map(root, cfg, settings, "umap")
    row.update(umap_warm_s=time.perf_counter() - t, umap_warm_project_s=warm.seconds)
    row["same_map"] = bool((warm.xy == cold.xy).all())  # random_state fixed: a map never moves

    t = time.perf_counter()
    pca = em.embedding_map(root, cfg, settings, "pca")
    row.update(pca_s=time.perf_counter() - t, pca_sep=pca.separation, pca_sil=pca.silhouette)

    t = time.perf_counter()
    urls = em.thumbnail_urls(root, cold.files)
    row["thumbs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    em.thumbnail_urls(root, cold.files)
    row["thumbs_again_s"] = time.perf_counter() - t
    sizes = sorted(len(u) * 3 // 4 for u in urls if u)  # base64: 4 characters per 3 bytes
    row.update(thumb_kb_median=sizes[len(sizes) // 2] / 1e3, thumbs_mb=sum(sizes) / 1e6, unreadable=urls.count(""))
    print("RESULT " + json.dumps(row), flush=True)


def run_child(root: Path, cache: Path, source: str, restart: bool = False) -> dict:
    t = time.perf_counter()
    command = [sys.executable, __file__, "--child", "--data", str(root), "--cache", str(cache), "--source", source]
    out = subprocess.run(command + ["--restart"] * restart, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"the measuring process failed:\n{out.stdout}\n{out.stderr}")
    return {**json.loads(lines[-1][len("RESULT ") :]), "process_s": time.perf_counter() - t}


def median(rows: List[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def bench(root: Path, cache: Path, source: str, repeats: int) -> None:
    from core.retrieval.index import open_index

    isa = cpu_isa()
    print(f"\n## {source} features\n", flush=True)
    t = time.perf_counter()
    index, report = open_index(root, "deep", config_for(source), settings=settings_for(cache))
    print(f"Search index ({isa}): {report.describe()} — {time.perf_counter() - t:.1f} s")
    print(f"features: {index.embedder.description}, {index.embedder.frozen.description}", flush=True)
    rows = []
    for r in range(repeats):
        rows.append(run_child(root, cache, source))
        rows[-1].update({f"restart_{k}": v for k, v in run_child(root, cache, source, restart=True).items()})
        print(json.dumps({"bench": "embedding_map", "isa": isa, "source": source, "repeat": r, **rows[-1]}), flush=True)
    first = rows[0]
    assert not any(r["index_rewritten"] for r in rows), "the map embedded photos: the features were not reused"

    def s(key: str) -> str:
        return f"{median(rows, key):.2f}"

    def ms(key: str) -> str:
        return f"{median(rows, key) * 1e3:.0f} ms"

    cold, warm = median(rows, "first_map_s"), median(rows, "umap_warm_s")
    table(
        [f"step (fresh processes, median of {repeats})", "seconds", "ISA"],
        [
            ["import core.explain.embedding_map", s("import_s"), isa],
            [
                "**first UMAP map in a fresh process** (network loaded, index read: 0 embedded; umap-learn "
                "imported, numba compiling; projection; scores)",
                f"**{cold:.2f}**",
                isa,
            ],
            ["… of which the projection and scores (`EmbeddingMap.seconds`)", s("umap_project_s"), isa],
            ["UMAP map, second call (memory: listing + stat of the files)", ms("again_s"), isa],
            ["`cached_map` with the memory caches dropped (disk; network still loaded)", ms("cached_map_s"), isa],
            ["UMAP map drawn again once compiled (warm)", s("umap_warm_s"), isa],
            ["PCA map", s("pca_s"), isa],
            [f"{first['n']:,} hover thumbnails, 64 px JPEG data URLs", s("thumbs_s"), isa],
            ["the thumbnails again (memory)", ms("thumbs_again_s"), isa],
            ["whole measuring process (python start to exit)", s("process_s"), isa],
            [
                "after a restart: `cached_map` in a fresh process (loads the network)",
                s("restart_restart_cached_map_s"),
                isa,
            ],
            ["… and again (memory)", ms("restart_cached_map_memory_s"), isa],
        ],
    )
    print(
        f"target: UMAP map of {first['n']:,} photos ≤ {TARGET_SECONDS:.0f} s the first time (features reused): "
        f"{cold:.1f} s ({isa}) — {'met' if cold <= TARGET_SECONDS else 'not met'}; numba's compilation, umap-learn's "
        f"import and the network's loading ≈ {cold - warm:.1f} s of it; the same map every time: "
        f"{all(r['same_map'] for r in rows)}"
    )
    print(
        f"thumbnails: median {first['thumb_kb_median']:.2f} KB, {first['thumbs_mb']:.1f} MB for all; "
        f"{first['unreadable']} unreadable"
    )
    table(
        ["map", "neighbours agree (LOO 5-NN on the map)", "silhouette", "chance (largest class)"],
        [
            ["UMAP", f"{first['umap_sep']:.3f}", f"{first['umap_sil']:.3f}", f"{first['chance']:.3f}"],
            ["PCA", f"{first['pca_sep']:.3f}", f"{first['pca_sil']:.3f}", f"{first['chance']:.3f}"],
        ],
    )
    print(f"features: {first['features']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="kept between runs: the index is built once")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run", action="append", default=[], help="also map this finished run's features")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", default="imagenet", help=argparse.SUPPRESS)
    p.add_argument("--restart", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    root, cache = Path(args.data).resolve(), Path(args.cache)
    if args.child:
        child(root, cache, args.source, args.restart)
        return 0
    if not root.is_dir():
        print(f"skipped: no dataset at {root} (the flowers photos; --data DIR to point elsewhere)")
        return 0
    print(f"# {machine()}; data {root}; cache {cache}")
    for source in ["imagenet", *args.run]:
        bench(root, cache, source, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
