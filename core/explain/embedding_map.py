"""The embedding map: every photo of a dataset as one dot in 2-D, placed so that photos the network finds alike
are close — UMAP of its deep features (PCA at once, as the fallback), with a one-number cluster separation.

The vectors are the Search index's (:func:`core.retrieval.index.open_index`, method ``"deep"``): a dataset is
embedded once for Search and the map, and the map follows the index's incremental updates. UMAP starts from the
index's own exact neighbours (15 per photo, itself included) rather than its own search, which below 4,096
points computes every pairwise distance through a numba callable: on the 2,919 flowers (2 cores) a warm map took
9.5 s that way and 3.5 s this way. Deep features are L2-normalised, so cosine and euclidean rank neighbours alike;
the distances handed to UMAP are euclidean (sqrt(2 - 2 cos)), which separated the flowers as well as cosine
(neighbours agree 0.856 against 0.855, silhouette 0.25 against 0.23; with umap-learn's own search euclidean was
also 1.7× faster). ``random_state`` is fixed, so a map never moves between draws (it also makes umap-learn
single-threaded).

The 2-D coordinates are saved beside the index, checked against the index's fingerprint (the dataset's files),
the embedder's key, the method, its parameters and the library's version: a second call reads them back without
embedding or projecting anything, and :func:`cached_map` answers "is there a fresh map?" without ever embedding.

How well the flowers separate is one number a class can read: **neighbours agree** — for each photo, do its 5
nearest dots on the map (itself left out) mostly belong to its own class? The share of photos where they do is
the leave-one-out 5-NN accuracy on the 2-D map; guessing the largest class scores :attr:`EmbeddingMap.chance`.
The silhouette (-1…1: how much closer a dot is to its own class than to the nearest other one) is kept beside it.

UMAP's first call in a process compiles umap-learn's numba functions: about 5.5 s of a 9 s first projection of
the flowers (2 cores), umap-learn's import (1.7 s) aside. NUMBA_CACHE_DIR would not save it: numba persists
only functions that opt in with ``cache=True`` (pynndescent's, not used here; umap-learn's layout and fuzzy-set
functions do not), and those already find a writable place (``__pycache__``, else the user's cache folder).
Measured: with a fresh NUMBA_CACHE_DIR the first projection stayed 8.8 s, and the first import took 13 s.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from core.data.decode import ImageDecodeError, open_rgb
from core.data.imagefolder import scan_image_folder
from core.data.tensor_cache import file_stats, stats_fingerprint
from core.data.uploads import lease_source
from core.errors import ConfigError, TransferLabError
from core.files import atomic_write
from core.lru import LockedLRU
from core.progress import ProgressFn, no_progress
from core.retrieval.embedders import EmbedderConfig, get_embedder
from core.retrieval.index import ImageIndex, index_path, open_index
from core.settings import Settings, usable_cpus

METHODS = ("umap", "pca")
UMAP_PARAMS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", "random_state": 0}
PCA_PARAMS = {"random_state": 0}
MIN_UMAP_POINTS = 4  # fewer photos are laid out by PCA whatever the method (umap-learn's layout fails below 4)
SEPARATION_K = 5  # nearest dots that vote in "neighbours agree"
MAP_VERSION = 1  # bump when what is saved, or how it is computed, changes


@dataclass
class EmbeddingMap:
    """A dataset's photos as points in 2-D, and how well its classes separate there."""

    root: Path
    files: List[str]  # relative paths, in the index's order
    labels: List[str]  # class name of each file
    classes: Tuple[str, ...]
    xy: np.ndarray  # float32 (n, 2)
    method: str  # "umap" or "pca"
    description: str  # whose features: "ImageNet EfficientNet-Lite0 features", "features of run …"
    separation: float  # share of photos whose 5 nearest dots mostly share their class (leave-one-out 5-NN)
    silhouette: float  # -1…1 on the map; NaN with fewer than two classes
    chance: float  # what "neighbours agree" would score by always guessing the largest class
    seconds: float  # to project and score (the features were the index's: no embedding counted)

    separation_label = "Neighbours agree"

    @property
    def separation_help(self) -> str:
        text = (
            f"For each photo, its {SEPARATION_K} nearest dots on this map vote for a class; this is the share of "
            f"photos whose vote names their own class (leave-one-out {SEPARATION_K}-NN accuracy on the 2-D map). "
            f"Always guessing the largest class would score {self.chance:.0%}."
        )
        if np.isfinite(self.silhouette):
            text += (
                f" Silhouette {self.silhouette:.2f} (from -1 to 1: how much closer a dot is to its own class than "
                "to the nearest other one)."
            )
        return text

    def as_frame(self) -> pd.DataFrame:
        """One row per photo: x, y, label, file — what the page's chart draws."""
        return pd.DataFrame({"x": self.xy[:, 0], "y": self.xy[:, 1], "label": self.labels, "file": self.files})


# ------------------------------------------------------------------------------------- projection and scores


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`; a :class:`ConfigError` saying so otherwise."""
    if method not in METHODS:
        raise ConfigError(f"Unknown map method '{method}'. Choose one of: {', '.join(METHODS)}.")
    return method


def project(vectors: np.ndarray, method: str, index: Optional[ImageIndex] = None) -> np.ndarray:
    """float32 ``(n, 2)`` coordinates of ``vectors``: PCA, or UMAP from ``index``'s exact neighbours (the index
    holding these very vectors, searched by cosine) or, without one, umap-learn's own neighbour search."""
    n = len(vectors)
    if check_method(method) == "pca" or n < MIN_UMAP_POINTS:
        from sklearn.decomposition import PCA  # noqa: PLC0415 (lazy: sklearn takes a second or two to import)

        xy = np.zeros((n, 2), dtype=np.float32)
        if n > 1:
            k = min(2, n, vectors.shape[1])
            xy[:, :k] = PCA(k, **PCA_PARAMS).fit_transform(vectors)
        return xy
    import umap  # noqa: PLC0415 (lazy: umap-learn imports numba and pynndescent, about 2 s)

    params = dict(UMAP_PARAMS, n_neighbors=min(UMAP_PARAMS["n_neighbors"], n - 1))
    if index is not None:
        scores, ids = index.search_vectors(vectors, params["n_neighbors"])
        params["precomputed_knn"] = (ids, np.sqrt(np.maximum(0.0, 2.0 - 2.0 * scores)))  # unit vectors
    with warnings.catch_warnings():  # "n_jobs overridden by random_state", "no search index: no transform()"
        warnings.simplefilter("ignore", UserWarning)
        return umap.UMAP(**params).fit_transform(vectors).astype(np.float32)


def separation(xy: np.ndarray, labels: Sequence, k: int = SEPARATION_K) -> float:
    """Leave-one-out ``k``-NN accuracy on the map: the share of points whose ``k`` nearest other points mostly
    carry their label (a tie goes to the label of the nearest point among the tied ones). NaN below 2 points."""
    from sklearn.neighbors import NearestNeighbors  # noqa: PLC0415 (lazy, as in project)

    y = np.unique(np.asarray(labels), return_inverse=True)[1].ravel()
    k = min(k, len(y) - 1)
    if k < 1:
        return float("nan")
    ids = NearestNeighbors(n_neighbors=k).fit(xy).kneighbors(return_distance=False)  # without the point itself
    votes = np.zeros((len(y), y.max() + 1))
    for rank in range(k):  # a vote counts 1, plus a tie-break below 1 in all that favours nearer ranks
        np.add.at(votes, (np.arange(len(y)), y[ids[:, rank]]), 1 + 0.5 ** (rank + 2))
    return float((votes.argmax(1) == y).mean())


def silhouette(xy: np.ndarray, labels: Sequence, sample: int = 5000) -> float:
    """sklearn's silhouette of the map (on a seeded sample of ``sample`` points above that); NaN when it is not
    defined (fewer than two labels, or as many labels as points)."""
    from sklearn.metrics import silhouette_score  # noqa: PLC0415 (lazy, as in project)

    if not 2 <= len(set(labels)) < len(labels):
        return float("nan")
    return float(silhouette_score(xy, np.asarray(labels), sample_size=min(sample, len(labels)), random_state=0))


def chance_level(labels: Sequence) -> float:
    """The share of the largest class: what guessing it every time scores."""
    return float(np.unique(np.asarray(labels), return_counts=True)[1].max() / len(labels)) if len(labels) else 0.0


# ------------------------------------------------------------------------------------------------ the cache

_maps: LockedLRU[Tuple[dict, EmbeddingMap]] = LockedLRU(maxsize=8)  # (file, its mtime) -> (token, map)


def _map_path(root: Path, embedder_cfg: EmbedderConfig, method: str, settings: Settings) -> Path:
    """The map's file, beside the dataset's indexes; named by the features asked for, so that it is found
    without loading the network (which features they are exactly is in the token inside)."""
    cfg = hashlib.sha1(json.dumps(embedder_cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return index_path(root, "deep", "", settings).parent / f"map-{method}-{cfg}.npz"


def _token(fingerprint: str, embedder_key: str, method: str) -> dict:
    """What a saved map was computed from: the dataset's files, the features, the method and its library."""
    lib = f"umap-learn {version('umap-learn')}" if method == "umap" else f"scikit-learn {version('scikit-learn')}"
    params = UMAP_PARAMS if check_method(method) == "umap" else PCA_PARAMS
    return {
        "fingerprint": fingerprint,
        "embedder": embedder_key,
        "method": method,
        **params,
        "lib": lib,
        "k": SEPARATION_K,
        "v": MAP_VERSION,
    }


def _read(path: Path, root: Path) -> Optional[Tuple[dict, EmbeddingMap]]:
    """The saved map at ``path`` and its token (from memory while the file is unchanged); None when absent or
    unreadable."""
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    found = _maps.get(key)
    if found is not None:
        return found
    try:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            xy = z["xy"]
        token = meta.pop("token")
        m = EmbeddingMap(root=root, xy=xy, **meta)
    except Exception:  # truncated, foreign or from another version: computed again
        return None
    m.classes = tuple(m.classes)
    return _maps.put(key, (token, m)) if xy.shape == (len(m.files), 2) else None


def _save(path: Path, token: dict, m: EmbeddingMap) -> None:
    fields = ("files", "labels", "classes", "method", "description", "separation", "silhouette", "chance", "seconds")
    meta = {"token": token, **{f: getattr(m, f) for f in fields}}
    with atomic_write(path, durable=False) as f:  # a cache: checked on load, computed again when damaged
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), xy=m.xy)
    _maps.put((str(path), path.stat().st_mtime_ns), (token, m))


def embedding_map(
    root: Union[str, Path],
    embedder_cfg: EmbedderConfig,
    settings: Settings,
    method: str = "umap",
    on_progress: ProgressFn = no_progress,
) -> EmbeddingMap:
    """The ``method`` map ("umap" or "pca") of the dataset at ``root`` (one sub-folder per class) with the deep
    features ``embedder_cfg`` gives: from memory or disk when the dataset and the features have not changed;
    else from the Search index's vectors (opened, updated or built by :func:`open_index`), projected and saved."""
    check_method(method)  # before any work
    root = Path(root).expanduser().resolve()
    index, _ = open_index(root, "deep", embedder_cfg, settings=settings, on_progress=on_progress)
    path = _map_path(root, embedder_cfg, method, settings)
    token = _token(index.meta["fingerprint"], index.meta["embedder_key"], method)
    found = _read(path, root)
    if found is not None and found[0] == token:
        return found[1]
    on_progress(0, None, f"placing {len(index):,} photos on a map ({method.upper()})")
    started = time.perf_counter()
    xy = project(index.vectors(), method, index)
    labels = [index.classes[i] for i in index.labels]
    m = EmbeddingMap(
        root=root,
        files=list(index.files),
        labels=labels,
        classes=tuple(index.classes),
        xy=xy,
        method=method,
        description=index.embedder.description,
        separation=separation(xy, labels),
        silhouette=silhouette(xy, labels),
        chance=chance_level(labels),
        seconds=time.perf_counter() - started,
    )
    _save(path, token, m)
    on_progress(1, 1, f"placed {len(index):,} photos on a map ({method.upper()})")
    return m


def cached_map(
    root: Union[str, Path], embedder_cfg: EmbedderConfig, settings: Settings, method: str = "umap"
) -> Optional[EmbeddingMap]:
    """The map :func:`embedding_map` would return, if it is saved and still fresh (same files, same features);
    else None. Never embeds or projects. Costs a look for the file; when there is one, a listing and a stat of
    the dataset's files; and when those have not changed, the network loaded (kept loaded afterwards, about
    1.5 s the first time in a process), as only it knows the key of its features. Safe on every rerun."""
    root = Path(root).expanduser().resolve()
    found = _read(_map_path(root, embedder_cfg, method, settings), root)
    if found is None:
        return None
    try:
        with lease_source(root, settings):
            listing = scan_image_folder(root, min_classes=1)
            fingerprint = stats_fingerprint(root, file_stats(root, listing.files))  # as open_index computes it
        if found[0]["fingerprint"] != fingerprint:
            return None
        embedder = get_embedder("deep", embedder_cfg, settings)
    except (OSError, TransferLabError):  # the dataset or the network is gone: no map to show (drawing says why)
        return None
    return found[1] if found[0] == _token(fingerprint, embedder.key, method) else None


def clear_memory_cache() -> None:
    _maps.clear()
    _thumbs.clear()


# ------------------------------------------------------------------------------------------------ thumbnails

_thumbs: LockedLRU[List[str]] = LockedLRU(maxsize=4)  # a few datasets' hover thumbnails


def _thumbnail_url(path: Path, px: int) -> str:
    try:
        im = open_rgb(path, draft_size=px)  # JPEGs decode at 1/2…1/8 scale, no smaller than px
    except ImageDecodeError:
        return ""
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70, optimize=True)  # optimised Huffman tables: a fifth smaller, free
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_urls(root: Union[str, Path], files: Sequence[str], px: int = 64) -> List[str]:
    """A ``data:image/jpeg;base64,…`` URL of each of ``files`` (relative to ``root``), at most ``px`` pixels a
    side (about 1.2 KB at 64 px), for the chart's hover tooltips; ``""`` for a file that cannot be read. Kept in
    memory for a few datasets."""
    root = Path(root)
    try:
        stamp = stats_fingerprint(root, file_stats(root, files))  # a photo replaced under the same name shows anew
    except OSError:  # a file went away since the map was drawn
        stamp = hashlib.sha1("\n".join(files).encode()).hexdigest()
    key = (str(root), stamp, px)
    found = _thumbs.get(key)
    if found is not None:
        return found
    with ThreadPoolExecutor(max_workers=usable_cpus()) as pool:  # PIL releases the GIL while decoding
        urls = list(pool.map(lambda f: _thumbnail_url(root / f, px), files))
    return _thumbs.put(key, urls)
