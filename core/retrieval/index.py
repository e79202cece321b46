"""Image retrieval indexes: one index per dataset and method (:mod:`core.retrieval.methods`) in a vector store
(:mod:`core.retrieval.stores`): a FAISS file on disk, the default and what follows describes, or a Milvus
collection (:mod:`core.retrieval.milvus`, same reuse rules, kept row by row).

Collections above :attr:`IndexConfig.approx_threshold` images get an HNSW graph instead of a flat index;
its recall against exact search is measured after every build, its search breadth (efSearch) raised until
that recall reaches :attr:`IndexConfig.target_recall`, and both are saved with it.

An index is saved as one file under ``<cache>/indexes/<dataset>/<method>-<embedder>.npz`` with the list of
files it holds (path, size, mtime). :func:`open_index` reuses it when neither the files nor the embedder
changed; when files were added it embeds only those and adds them; when files changed or went away it
re-embeds only the changed ones and rebuilds the index from the vectors it already has.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import faiss
import numpy as np

from core.data.decode import ImageDecodeError, unusable_photo
from core.data.imagefolder import ImageFolderListing, scan_image_folder
from core.data.tensor_cache import file_stats, stats_fingerprint
from core.data.uploads import lease_source
from core.errors import ConfigError, DataError
from core.files import atomic_write
from core.lru import LockedLRU
from core.progress import ProgressFn, no_progress
from core.retrieval import milvus
from core.retrieval.embedders import Embedder, EmbedderConfig, get_embedder
from core.retrieval.methods import METHODS, MethodSpec, get_method
from core.retrieval.projection import triplet_embedder
from core.retrieval.stores import FaissStore, StoreConfig, VectorStore, faiss_vectors
from core.settings import Settings

INDEX_VERSION = 1


@dataclass
class IndexConfig:
    """Which FAISS index to build; saved with every index."""

    # more images than this: an approximate HNSW index instead of exact search. Measured (BENCHMARKS.md, issue 16):
    # one exact query over 1,280-d deep vectors takes p95 8.8 ms at 20,000 images and 24 ms at 50,000 on 2 cores
    approx_threshold: int = 20_000
    hnsw_m: int = 32  # graph neighbours per node
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128  # search breadth to start from: higher is slower and closer to exact
    recall_queries: int = 200  # dataset images used to measure the approximate index's recall
    recall_k: int = 10
    target_recall: float = 0.95  # efSearch is doubled after a build until the measured recall@k reaches this,
    max_ef_search: int = 4096  # ... or this breadth (then the recall reached is what is reported),
    ef_latency_ms: float = 15.0  # ... but never to a breadth whose single queries take longer than this (p95)

    def validate(self) -> IndexConfig:
        if self.approx_threshold < 0:
            raise ConfigError(f"The approximate-index threshold must be 0 or more, got {self.approx_threshold}.")
        if self.hnsw_m < 4 or self.hnsw_ef_search < 1 or self.hnsw_ef_construction < 1:
            raise ConfigError("HNSW parameters must be positive (M at least 4).")
        if not 0 < self.target_recall <= 1 or self.max_ef_search < self.hnsw_ef_search or self.ef_latency_ms < 0:
            raise ConfigError(
                "The target recall must be in (0, 1], the largest efSearch at least the first, and the query time "
                "budget 0 or more."
            )
        return self

    def kind_for(self, n: int) -> str:
        return "hnsw" if n > self.approx_threshold else "flat"


@dataclass
class Neighbour:
    rank: int
    path: str  # absolute
    file: str  # relative to the dataset root
    label: str
    score: float

    def as_json(self) -> dict:
        return {"path": self.path, "label": self.label, "score": self.score}


@dataclass
class SearchResult:
    method: str
    neighbours: List[Neighbour]
    embed_seconds: float
    search_seconds: float

    @property
    def seconds(self) -> float:
        return self.embed_seconds + self.search_seconds


@dataclass
class BuildReport:
    """What :func:`open_index` did, for people (``describe()``) and scripts (``as_json()``)."""

    method: str
    action: str  # "reused", "added", "updated", "built"
    images: int
    embedded: int  # images embedded this time
    reused_vectors: int  # vectors kept from the saved index
    skipped: List[str]  # files that could not be read as images
    kind: str  # "flat" or "hnsw"
    embedder: str
    path: str  # where the index is: its FAISS file, or a Milvus URI and collection
    seconds: float
    recall: Optional[dict] = None
    store: str = "faiss"  # "faiss", "milvus"

    def describe(self) -> str:
        what = {
            "reused": "reused the cached index",
            "added": f"added {self.embedded} new image(s) to the cached index",
            "updated": f"updated the cached index: re-embedded {self.embedded} new or changed image(s), kept "
            f"{self.reused_vectors}",
            "built": f"built a new index: embedded {self.embedded} image(s)",
        }[self.action]
        kind = "exact search" if self.kind == "flat" else "approximate HNSW search"
        store = "FAISS" if self.store == "faiss" else "Milvus"
        text = (
            f"{self.method}: {what} — {self.images} images, {self.embedder}, {kind} in {store}, "
            f"{self.seconds:.1f} s; {self.path}"
        )
        if self.recall:
            text += (
                f"; recall@{self.recall['k']} vs exact {self.recall['recall']:.3f} ({self.recall['queries']} queries"
                + (f", efSearch {self.recall['ef_search']})" if "ef_search" in self.recall else ")")
            )
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable file(s) skipped"
        return text

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class ImageIndex:
    """A searchable index of one dataset's images by one method."""

    method: MethodSpec
    root: Path
    classes: Tuple[str, ...]
    files: List[str]  # relative paths, in index id order
    labels: np.ndarray  # int64 class index per id
    store: VectorStore  # the vectors, searched (ids are positions in files)
    embedder: Optional[Embedder]  # None for an index read by :func:`saved_indexes`: it searches its own vectors
    meta: dict
    path: Path  # the FAISS file; for Milvus, the name of the local files kept beside it (leave-one-out ids)
    _loo: Optional[np.ndarray] = field(default=None, repr=False)
    _loo_partial: Optional[Tuple[np.ndarray, int]] = field(default=None, repr=False)  # (ids, rows done)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def vectors(self) -> np.ndarray:
        return self.store.vectors()

    def embed(self, source, name: str = "") -> np.ndarray:
        """The query vector ``(1, dim)`` of a path or file-like object (rewound first: one upload can be
        searched by every method). Raises :class:`DataError` saying why a file cannot be used."""
        if hasattr(source, "seek"):
            source.seek(0)
        try:
            v = self.embedder.embed_source(source)[None].astype(np.float32)
        except ImageDecodeError as e:
            raise unusable_photo(e, name or Path(str(getattr(source, "name", source) or "")).name) from e
        return self.method.prepare(v)

    def embed_files(
        self, paths: Sequence[Path], on_progress: ProgressFn = no_progress
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Vectors of ``paths`` as the index holds them, and which files could be read (bool array)."""
        vectors, ok = self.embedder.embed_files(paths, on_progress)
        return self.method.prepare(vectors), np.array(ok, dtype=bool)

    def search_vectors(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Scores and ids ``(m, k)`` of the ``k`` nearest (closest first; id -1 where fewer exist)."""
        return self.store.search(queries, min(k, len(self)))

    def neighbours(
        self, scores: np.ndarray, ids: np.ndarray, exclude: Optional[int] = None, k: Optional[int] = None
    ) -> List[Neighbour]:
        out = []
        for score, i in zip(scores, ids):
            if i < 0 or i == exclude:
                continue
            out.append(
                Neighbour(
                    rank=len(out) + 1,
                    path=str(self.root / self.files[i]),
                    file=self.files[i],
                    label=self.classes[self.labels[i]],
                    score=float(score),
                )
            )
        return out[:k] if k is not None else out

    def neighbours_of(self, i: int, k: int) -> List[Neighbour]:
        """The ``k`` nearest *other* images to the image with id ``i``, by its stored vector (nothing embedded)."""
        scores, ids = self.search_vectors(self.store.vectors(i, i + 1), k + 1)
        return self.neighbours(scores[0], ids[0], exclude=i, k=k)

    def id_of(self, file: str) -> Optional[int]:
        try:
            return self.files.index(file)
        except ValueError:
            return None

    def search(self, source, k: int = 8, exclude_file: Optional[str] = None, name: str = "") -> SearchResult:
        """The ``k`` nearest images to ``source`` (a path or an uploaded file called ``name``), leaving out
        ``exclude_file`` (the query itself when it comes from the dataset)."""
        t0 = time.perf_counter()
        q = self.embed(source, name)
        t1 = time.perf_counter()
        exclude = self.id_of(exclude_file) if exclude_file else None
        scores, ids = self.search_vectors(q, k + (exclude is not None))
        t2 = time.perf_counter()
        return SearchResult(self.method.name, self.neighbours(scores[0], ids[0], exclude, k), t1 - t0, t2 - t1)

    def _loo_cache(self) -> Tuple[Path, str]:
        token = f"{self.meta['fingerprint']}-{self.meta['embedder_key']}-{self.meta['kind']}"
        return self.path.with_name(self.path.stem + ".loo.npz"), token

    def has_leave_one_out(self, k: int) -> bool:
        """Whether :meth:`leave_one_out` for ``k`` is already computed (in memory or on disk)."""
        return self._cached_loo(k) is not None

    def _cached_loo(self, k: int) -> Optional[np.ndarray]:
        if self._loo is not None and self._loo.shape[1] >= k:
            return self._loo[:, :k]
        path, token = self._loo_cache()
        try:
            with np.load(path) as z:
                if str(z["token"]) == token and z["ids"].shape[1] >= k:
                    self._loo = z["ids"]
                    return self._loo[:, :k]
        except (OSError, KeyError, ValueError):
            pass
        return None

    def leave_one_out(self, k: int, on_progress: ProgressFn = no_progress, batch: int = 256) -> np.ndarray:
        """ids ``(n, k)``: each image's ``k`` nearest *other* images, closest first. Kept in memory and on
        disk; a smaller ``k`` later is answered from the saved larger one. Resumable: when ``on_progress``
        raises (an app rerun stops the script there), the next call carries on from the last finished batch."""
        with self._lock:
            cached = self._cached_loo(k)
            if cached is not None:
                return cached
            n = len(self)
            if self._loo_partial is None or self._loo_partial[0].shape[1] != k:
                self._loo_partial = (np.full((n, k), -1, dtype=np.int64), 0)
            ids, start = self._loo_partial
            while start < n:
                stop = min(n, start + batch)
                q = self.store.vectors(start, stop)
                _, found = self.search_vectors(q, k + 1)
                for row, i in enumerate(range(start, stop)):
                    hits = [j for j in found[row] if j != i and j >= 0][:k]  # the query itself, wherever ties put it
                    ids[i, : len(hits)] = hits
                self._loo_partial = (ids, stop)
                start = stop
                on_progress(stop, n, f"leave-one-out search ({self.method.display})")
            path, token = self._loo_cache()
            _save_npz(path, token=np.array(token), ids=ids)
            self._loo, self._loo_partial = ids, None
            return ids


# --------------------------------------------------------------------------------------------- building


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def index_path(
    root: Path, method: str, embedder_key: str, settings: Settings, store: Optional[StoreConfig] = None
) -> Path:
    """The index's FAISS file; with a Milvus ``store``, the name its local side files take (never written itself)."""
    folder = _short_hash(str(Path(root).resolve()))
    name = f"{method}-{_short_hash(embedder_key)}"
    if store is not None and store.kind == "milvus":
        name += f".milvus-{_short_hash(store.uri)}"
    return settings.cache_dir / "indexes" / folder / f"{name}.npz"


def _save_npz(path: Path, **arrays) -> None:
    with atomic_write(path, durable=False) as f:  # a cache: checked on load, rebuilt when damaged
        np.savez(f, **arrays)


def _save(path: Path, index: faiss.Index, meta: dict) -> None:
    _save_npz(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), index=faiss.serialize_index(index))


def _load(path: Path) -> Optional[Tuple[faiss.Index, dict]]:
    """The saved index and its metadata, or None when absent or unreadable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            index = faiss.deserialize_index(z["index"])
    except Exception:  # truncated, foreign or damaged file: rebuild it
        return None
    if meta.get("version") != INDEX_VERSION or index.ntotal != len(meta.get("entries", ())):
        return None
    return index, meta


def _new_index(kind: str, dim: int, metric: int, cfg: IndexConfig) -> faiss.Index:
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, metric)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
        return index
    return faiss.IndexFlat(dim, metric)


def _exact_sample(index: faiss.Index, metric: int, k: int, queries: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A seeded sample of ``index``'s own vectors (their ids) and the exact ``k`` nearest *other* vectors of each.
    An HNSW graph's flat storage is searched in place (no copy of a million vectors)."""
    n = index.ntotal
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False))
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else None
    if not isinstance(storage, faiss.IndexFlat):
        storage = faiss.IndexFlat(index.d, metric)
        storage.add(faiss_vectors(index))
    return pick, _others(storage, index, pick, k)


def _others(searched: faiss.Index, index: faiss.Index, pick: np.ndarray, k: int) -> np.ndarray:
    """ids ``(len(pick), k)``: the ``k`` nearest to each picked vector in ``searched``, the vector itself left out
    (found first, it would count as a free hit, as no query from outside the index gets)."""
    q = np.stack([index.reconstruct(int(i)) for i in pick]) if len(pick) else np.zeros((0, index.d), np.float32)
    _, ids = searched.search(np.ascontiguousarray(q, dtype=np.float32), k + 1)
    return np.array([[j for j in row if j != i][:k] for i, row in zip(pick, ids)], dtype=np.int64).reshape(-1, k)


def _recall(index: faiss.Index, pick: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    if not len(pick) or not k:
        return 1.0
    found = _others(index, index, pick, k)
    return sum(len(set(a.tolist()) & set(e.tolist()) - {-1}) for a, e in zip(found, exact_ids)) / (k * len(pick))


def _p95_ms(index: faiss.Index, pick: np.ndarray, k: int) -> float:
    """p95 milliseconds of single searches for the picked vectors (as users search: one query at a time)."""
    times = []
    for i in pick[:100]:
        q = index.reconstruct(int(i))[None]
        t = time.perf_counter()
        index.search(q, k + 1)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.percentile(times, 95)) if times else 0.0


def measure_recall(index: faiss.Index, metric: int, k: int, queries: int, seed: int = 0) -> dict:
    """Recall@k of an approximate index against exact search over the same vectors, on a seeded sample of its own
    vectors as queries: the share of each one's exact ``k`` nearest *other* vectors that the approximate index
    finds."""
    k = min(k, index.ntotal - 1)
    pick, exact_ids = _exact_sample(index, metric, k, queries, seed)
    return {"k": k, "queries": int(len(pick)), "recall": _recall(index, pick, exact_ids, k)}


def tune_ef_search(index: faiss.IndexHNSW, metric: int, cfg: IndexConfig, seed: int = 0) -> dict:
    """:func:`measure_recall`'s result once the graph's efSearch has been doubled from ``cfg.hnsw_ef_search``
    until the recall reaches ``cfg.target_recall``, with the breadth chosen as ``"ef_search"``; the index is
    left searching at that breadth. The doubling stops at ``cfg.max_ef_search``, and before a breadth whose
    single queries take longer than ``cfg.ef_latency_ms`` (p95): a search is never made slow to chase recall.
    Larger collections need a wider search for the same recall (BENCHMARKS.md: efSearch 128 finds 0.84 of the
    top-10 at a million vectors, 1024 finds 0.955 in 9.9 ms)."""
    k = min(cfg.recall_k, index.ntotal - 1)
    pick, exact_ids = _exact_sample(index, metric, k, cfg.recall_queries, seed)
    ef = cfg.hnsw_ef_search
    index.hnsw.efSearch = ef
    best = {"k": k, "queries": int(len(pick)), "recall": _recall(index, pick, exact_ids, k), "ef_search": ef}
    while best["recall"] < cfg.target_recall and ef < cfg.max_ef_search:
        ef = min(2 * ef, cfg.max_ef_search)
        index.hnsw.efSearch = ef
        if _p95_ms(index, pick, k) > cfg.ef_latency_ms:
            break
        best = {**best, "recall": _recall(index, pick, exact_ids, k), "ef_search": ef}
    index.hnsw.efSearch = best["ef_search"]
    return best


_open: LockedLRU[ImageIndex] = LockedLRU(maxsize=4)  # indexes kept open between searches, by file
_build_locks: Dict[str, threading.Lock] = {}
_build_locks_lock = threading.Lock()


def _remember(index: ImageIndex) -> ImageIndex:
    return _open.put(str(index.path), index)


def clear_memory_cache() -> None:
    _open.clear()


def open_index(
    root: Path,
    method: str,
    embedder_cfg: Optional[EmbedderConfig] = None,
    index_cfg: Optional[IndexConfig] = None,
    settings: Optional[Settings] = None,
    on_progress: ProgressFn = no_progress,
    listing: Optional[ImageFolderListing] = None,
    store: Optional[StoreConfig] = None,
) -> Tuple[ImageIndex, BuildReport]:
    """The index of the images under ``root`` (one sub-folder per class) for ``method``: from memory, from
    disk, updated incrementally, or built — whichever the dataset's files and the embedder allow.

    ``listing``: ``root`` just scanned by :func:`scan_image_folder` (opening several methods scans once).
    ``store``: where the vectors live (default: the environment's, see :mod:`core.retrieval.stores`). A Milvus
    store refuses what it cannot do (:class:`core.retrieval.milvus.StoreUnsupported`) before any work."""
    spec = get_method(method)
    settings = settings or Settings.from_env()
    index_cfg = (index_cfg or IndexConfig()).validate()
    store = StoreConfig.from_settings(settings) if store is None else store.resolved(settings)
    on_milvus = store.kind == "milvus"
    if on_milvus:
        milvus.check_method(spec)  # l1 has no Milvus metric: said before scanning or embedding anything
    root = Path(root).expanduser().resolve()
    with lease_source(root, settings):  # an uploaded dataset is not evicted while its index is read
        started = time.perf_counter()
        listing = listing or scan_image_folder(root, min_classes=1)
        embedder = _embedder(spec, root, embedder_cfg, settings, listing, store)
        if on_milvus:
            milvus.check_method(spec, embedder.dim)
        path = index_path(root, method, embedder.key, settings, store)
        entries = file_stats(root, listing.files)
        fingerprint = stats_fingerprint(root, entries)
        kind = "flat" if on_milvus else index_cfg.kind_for(len(entries))  # Milvus: always exact (FLAT)
        cfg_dict = asdict(index_cfg)

        def fresh(meta: dict) -> bool:
            return (
                meta["fingerprint"] == fingerprint
                and meta["embedder_key"] == embedder.key
                and meta["kind"] == kind
                and (kind == "flat" or meta["index_config"] == cfg_dict)
            )

        def report(action: str, index: ImageIndex, embedded: int, reused: int) -> BuildReport:
            return BuildReport(
                method=method,
                action=action,
                images=len(index),
                embedded=embedded,
                reused_vectors=reused,
                skipped=[e[0] for e in index.meta["skipped"]],
                kind=index.kind,
                embedder=embedder.description,
                path=index.store.location,
                seconds=time.perf_counter() - started,
                recall=index.meta.get("recall"),
                store=index.store.kind,
            )

        def meta_of(entries_kept: List[list], skipped: List[list]) -> dict:
            return {
                "version": INDEX_VERSION,
                "method": method,
                "root": str(root),
                "embedder_key": embedder.key,
                "embedder": embedder.description,
                "embedder_config": (embedder_cfg or EmbedderConfig()).to_dict(),
                "index_config": cfg_dict,
                "kind": kind,
                "dim": embedder.dim,
                "fingerprint": fingerprint,
                "entries": entries_kept,
                "skipped": skipped,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "recall": None,
            }

        cached = _open.get(str(path))
        with _build_locks_lock:
            lock = _build_locks.setdefault(str(path), threading.Lock())
        if cached is not None and fresh(cached.meta):
            _remember(cached)
            return cached, report("reused", cached, 0, 0)
        with lock:  # one build per index at a time; a second caller then finds the first one's result
            if on_milvus:
                synced = _sync_milvus(spec, root, entries, embedder, store, on_progress)
                meta = meta_of(synced.entries, synced.skipped)
                index = _wrap(spec, root, listing.classes, synced.store, meta, embedder, path)
                _remember(index)
                return index, report(synced.action, index, synced.embedded, synced.reused)
            saved = _load(path)
            if saved is not None and saved[1]["embedder_key"] == embedder.key and fresh(saved[1]):
                index = _wrap(spec, root, listing.classes, FaissStore(saved[0], path), saved[1], embedder, path)
                _remember(index)
                return index, report("reused", index, 0, 0)
            b = _build(spec, root, entries, saved, embedder, kind, index_cfg, on_progress)
            meta = meta_of(b.entries, b.skipped)
            if kind == "hnsw":
                on_progress(0, None, "measuring the approximate index's recall (and widening its search to reach "
                            f"{index_cfg.target_recall:.0%})")  # fmt: skip
                meta["recall"] = tune_ef_search(b.index, spec.metric, index_cfg)
            _save(path, b.index, meta)
            built = _wrap(spec, root, listing.classes, FaissStore(b.index, path), meta, embedder, path)
            _remember(built)
            return built, report(b.action, built, b.embedded, b.reused)


def saved_indexes(root: Path, settings: Optional[Settings] = None) -> Dict[str, ImageIndex]:
    """The newest FAISS index of each method saved in the cache for the dataset at ``root`` that still holds its files
    as they are now, ``{method: index}``. They are only read: nothing is built, updated or embedded, and no embedder
    is loaded (their ``embedder`` is None; they search by their stored vectors, :meth:`ImageIndex.neighbours_of`).
    Only each file's metadata is read to choose, then one index per method (a pixel index of the flowers is ~0.5 GB).
    For questions asked of the Search page's indexes while a student waits (the quiz). Milvus collections are not
    read here."""
    settings = settings or Settings.from_env()
    root = Path(root).expanduser().resolve()
    folder = index_path(root, "", "", settings).parent
    if not folder.is_dir():
        return {}
    listing = scan_image_folder(root, min_classes=1)
    fingerprint = stats_fingerprint(root, file_stats(root, listing.files))
    newest: Dict[str, Tuple[str, Path]] = {}
    for path in folder.glob("*.npz"):
        meta = None if path.name.endswith(".loo.npz") else _saved_meta(path)  # leave-one-out ids: no index
        if meta is None or meta.get("fingerprint") != fingerprint or meta.get("method") not in METHODS:
            continue  # the dataset changed since: the Search page updates it when next opened
        built = (str(meta.get("built_at", "")), path.name)
        if meta["method"] not in newest or built > newest[meta["method"]][0]:
            newest[meta["method"]] = (built, path)
    found: Dict[str, ImageIndex] = {}
    for method, (_, path) in newest.items():
        in_memory = _open.get(str(path))
        if in_memory is not None and in_memory.store.kind == "faiss":
            index, meta = in_memory.store.index, in_memory.meta  # open already: not read again
        else:
            saved = _load(path)
            if saved is None:
                continue
            index, meta = saved
        found[method] = _wrap(get_method(method), root, listing.classes, FaissStore(index, path), meta, None, path)
    return found


def _saved_meta(path: Path) -> Optional[dict]:
    """A saved index's metadata alone (an ``.npz`` member is read only when asked for), or None when unreadable."""
    try:
        with np.load(path) as z:
            return json.loads(z["meta"].tobytes().decode())
    except Exception:  # truncated, foreign or damaged: not an index to answer from
        return None


def _sync_milvus(
    spec: MethodSpec,
    root: Path,
    entries: List[Tuple[str, int, int]],
    embedder: Embedder,
    store: StoreConfig,
    on_progress: ProgressFn,
) -> milvus.Synced:
    """The dataset's Milvus collection, brought in line with its files (see :func:`core.retrieval.milvus.sync`)."""

    def embed(todo: List[Tuple[str, int, int]]) -> Tuple[np.ndarray, np.ndarray]:
        vectors, ok = embedder.embed_files([root / e[0] for e in todo], on_progress)
        return spec.prepare(vectors), np.array(ok, dtype=bool)

    name = milvus.collection_name(spec.name, _short_hash(str(root)), _short_hash(embedder.key))
    metric = milvus.check_method(spec, embedder.dim)
    return milvus.sync(store.uri, store.token, name, str(root), metric, embedder.dim, entries, embed, on_progress)


def _embedder(
    spec: MethodSpec,
    root: Path,
    cfg: Optional[EmbedderConfig],
    settings: Settings,
    listing: ImageFolderListing,
    store: StoreConfig,
) -> Embedder:
    """The embedder of ``spec``. The triplet one takes the deep vectors of dataset files from the (cached) deep
    index of the same features in the same store, so building its index projects them instead of embedding the
    photos again."""
    if spec.embedder != "triplet":
        return get_embedder(spec.embedder, cfg, settings)
    cfg = (cfg or EmbedderConfig()).validate()

    def deep_vectors(paths: Sequence[Path], on_progress: ProgressFn) -> Tuple[np.ndarray, List[bool]]:
        deep, _ = open_index(
            root, "deep", cfg, settings=settings, on_progress=on_progress, listing=listing, store=store
        )
        row = {str(root / f): i for i, f in enumerate(deep.files)}
        unreadable = {str(root / e[0]) for e in deep.meta["skipped"]}
        missing = [p for p in paths if str(p) not in row and str(p) not in unreadable]  # none, when listed alike
        vectors, ok = deep.embedder.embed_files(missing, on_progress) if missing else (None, [])
        extra = {str(p): (vectors[i], good) for i, (p, good) in enumerate(zip(missing, ok))}
        held = deep.vectors()
        out = np.zeros((len(paths), deep.embedder.dim), dtype=np.float32)
        found: List[bool] = []
        for i, p in enumerate(paths):
            if str(p) in row:
                out[i], good = held[row[str(p)]], True
            elif str(p) in extra:
                out[i], good = extra[str(p)]
            else:
                good = False
            found.append(bool(good))
        return out, found

    return triplet_embedder(root, cfg, settings, deep_vectors)


def _wrap(
    spec: MethodSpec,
    root: Path,
    classes: Sequence[str],
    store: VectorStore,
    meta: dict,
    embedder: Optional[Embedder],
    path: Path,
) -> ImageIndex:
    if isinstance(store, FaissStore) and isinstance(store.index, faiss.IndexHNSW):
        store.index.hnsw.efSearch = (meta.get("recall") or {}).get("ef_search", meta["index_config"]["hnsw_ef_search"])
    position = {c: i for i, c in enumerate(classes)}
    files = [e[0] for e in meta["entries"]]
    labels = np.array([position[f.split("/", 1)[0]] for f in files], dtype=np.int64)
    return ImageIndex(
        method=spec,
        root=root,
        classes=tuple(classes),
        files=files,
        labels=labels,
        store=store,
        embedder=embedder,
        meta=meta,
        path=path,
    )


@dataclass
class _Built:
    index: faiss.Index
    entries: List[list]  # [relative path, size, mtime_ns] in id order
    skipped: List[list]
    embedded: int
    reused: int
    action: str


def _build(
    spec: MethodSpec,
    root: Path,
    entries: List[Tuple[str, int, int]],
    saved: Optional[Tuple[faiss.Index, dict]],
    embedder: Embedder,
    kind: str,
    cfg: IndexConfig,
    on_progress: ProgressFn,
) -> _Built:
    """The index of ``entries``, embedding only what ``saved`` (same embedder) does not already hold."""
    old_index, old_meta = saved if saved and saved[1]["embedder_key"] == embedder.key else (None, None)
    old_ids = {tuple(e): i for i, e in enumerate(old_meta["entries"])} if old_meta else {}
    old_skipped = {tuple(e) for e in old_meta["skipped"]} if old_meta else set()
    current = [tuple(e) for e in entries]
    todo = [e for e in current if e not in old_ids and e not in old_skipped]  # new or changed files
    vectors, ok = embedder.embed_files([root / e[0] for e in todo], on_progress)
    spec.prepare(vectors)
    ok = np.array(ok, dtype=bool)
    good = {e: row for row, e in enumerate(todo) if ok[row]}
    skipped = [list(e) for e in current if e in old_skipped] + [list(e) for e, g in zip(todo, ok) if not g]
    reuse = [e for e in current if e in old_ids]
    if not reuse and not good:
        raise DataError(f"None of the {len(current)} image file(s) in {root} could be read as an image.")
    everything_kept = len(reuse) + len(old_skipped & set(current)) == len(old_ids) + len(old_skipped)
    same_kind = (
        old_meta is not None
        and old_meta["kind"] == kind
        and (kind == "flat" or old_meta["index_config"] == asdict(cfg))
    )
    if old_index is not None and everything_kept and same_kind:  # only additions: add them to the saved index
        old_index.add(vectors[ok])
        return _Built(
            old_index,
            [list(e) for e in old_meta["entries"]] + [list(e) for e in good],
            skipped,
            len(todo),
            len(reuse),
            "added",
        )
    kept = [e for e in current if e in old_ids or e in good]
    pos = {e: i for i, e in enumerate(kept)}
    all_vectors = np.zeros((len(kept), embedder.dim), dtype=np.float32)
    if reuse:
        old_vectors = faiss_vectors(old_index)
        all_vectors[[pos[e] for e in reuse]] = old_vectors[[old_ids[e] for e in reuse]]
    if good:
        all_vectors[[pos[e] for e in good]] = vectors[list(good.values())]
    index = _new_index(kind, embedder.dim, spec.metric, cfg)
    if kind == "hnsw":
        on_progress(0, len(kept), "building the HNSW graph")
    index.add(all_vectors)
    return _Built(
        index, [list(e) for e in kept], skipped, len(todo), len(reuse), "updated" if old_index is not None else "built"
    )
