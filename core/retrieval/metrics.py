"""How good is a retrieval method? precision@k and mAP@k on a labelled dataset.

A retrieved image is *relevant* when it has the query's class. Three protocols:

* **leave-one-out** (default): every image of the dataset is a query against all the others;
* **query folder**: every image of a separate folder (same class names) is a query against the dataset;
* **held-out**: the images of a test split (that a trained method never saw) are the queries, each against
  all the other images of the dataset: how a method fitted on the dataset's other photos is measured.

For one query with ``R`` relevant images in the collection and ``rel_i`` = 1 when the ``i``-th result is
relevant: ``precision@k = sum(rel_1..k) / k`` and ``AP@k = sum_i precision@i * rel_i / min(k, R)``.
The reported figures are the means over queries (queries with ``R = 0`` are left out of AP).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import faiss
import numpy as np

from core.data.imagefolder import scan_image_folder
from core.errors import DataError
from core.progress import ProgressFn, no_progress
from core.retrieval.index import ImageIndex


@dataclass
class RetrievalQuality:
    method: str
    k: int
    precision_at_k: float
    map_at_k: float
    queries: int
    protocol: str  # "leave-one-out", "query folder", or "held-out: ..." (see held_out_protocol)
    seconds: float
    chance: float  # the expected precision@k of neighbours picked at random

    def as_json(self) -> dict:
        return {"precision_at_k": self.precision_at_k, "map_at_k": self.map_at_k}

    def as_dict(self) -> dict:
        return asdict(self)


def quality_from_relevance(relevant: np.ndarray, n_relevant: Sequence[int]) -> tuple:
    """(precision@k, mAP@k) from a boolean ``(queries, k)`` relevance matrix (closest first) and each query's
    number of relevant images in the collection."""
    relevant = np.asarray(relevant, dtype=bool)
    n_relevant = np.asarray(n_relevant)
    if relevant.size == 0:
        return 0.0, 0.0
    k = relevant.shape[1]
    hits = np.cumsum(relevant, axis=1)
    precision_at = hits / np.arange(1, k + 1)
    has = n_relevant > 0
    ap = (precision_at * relevant).sum(axis=1)[has] / np.minimum(k, n_relevant[has])
    return float(precision_at[:, -1].mean()), float(ap.mean()) if ap.size else 0.0


def evaluate_index(
    index: ImageIndex, k: int = 10, queries: Optional[Path] = None, on_progress: ProgressFn = no_progress
) -> RetrievalQuality:
    """precision@k and mAP@k of ``index``: leave-one-out over its own images, or with ``queries`` (a folder
    with sub-folders named like the dataset's classes) as the queries. An index whose embedder was trained on the
    dataset (``triplet``) is never scored over the photos it was fitted on: without ``queries``, its held-out
    test photos are the queries (:func:`evaluate_held_out`)."""
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}.")
    if queries is None and index.embedder.held_out is not None:
        return evaluate_held_out(index, index.embedder.held_out, k)
    started = time.perf_counter()
    counts = np.bincount(index.labels, minlength=len(index.classes))
    if queries is None:
        if len(index) < 2:
            raise DataError("Leave-one-out needs at least 2 images in the dataset.")
        k = min(k, len(index) - 1)
        ids = index.leave_one_out(k, on_progress)
        query_labels = index.labels
        n_relevant = counts[query_labels] - 1
        pool = len(index) - 1
        protocol = "leave-one-out"
    else:
        listing = scan_image_folder(Path(queries), min_classes=1)
        position = {c: i for i, c in enumerate(index.classes)}
        if not set(listing.classes) & set(position):
            raise DataError(
                f"None of the query folder's classes ({', '.join(listing.classes)}) is a class of the "
                f"dataset ({', '.join(index.classes)})."
            )
        vectors, ok = index.embed_files([listing.root / f for f in listing.files], on_progress)
        vectors = vectors[ok]
        if not len(vectors):
            raise DataError(f"None of the images in {queries} could be read.")
        k = min(k, len(index))
        _, ids = index.search_vectors(vectors, k)
        query_labels = np.array(
            [position.get(listing.classes[lab], -1) for lab, good in zip(listing.labels, ok) if good]
        )
        n_relevant = np.where(query_labels >= 0, counts[np.maximum(query_labels, 0)], 0)
        pool = len(index)
        protocol = "query folder"
    relevant = (ids >= 0) & (index.labels[np.maximum(ids, 0)] == query_labels[:, None])
    p, m = quality_from_relevance(relevant, n_relevant)
    return RetrievalQuality(
        method=index.method.name,
        k=k,
        precision_at_k=p,
        map_at_k=m,
        queries=len(relevant),
        protocol=protocol,
        seconds=time.perf_counter() - started,
        chance=float(np.mean(n_relevant / pool)),
    )


def held_out_protocol(queries: int, images: int) -> str:
    """The held-out protocol in words, as the CLI prints it and the Search page shows it."""
    return (
        f"held-out: {queries:,} test photos never used for training as queries, each against the other "
        f"{images - 1:,} photos of the dataset"
    )


def held_out_quality(
    method: str, vectors: np.ndarray, labels: np.ndarray, query_ids: Sequence[int], k: int, metric: int
) -> RetrievalQuality:
    """precision@k and mAP@k with the rows ``query_ids`` of ``vectors`` as queries, each searched (exactly)
    among all the other rows: the held-out protocol on plain arrays (``labels``: int class per row)."""
    started = time.perf_counter()
    labels, query_ids = np.asarray(labels), np.asarray(query_ids, dtype=np.int64)
    n = len(vectors)
    if n < 2 or not len(query_ids):
        raise DataError("The held-out protocol needs at least one query and one other image.")
    k = min(k, n - 1)
    exact = faiss.IndexFlat(vectors.shape[1], metric)
    exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, found = exact.search(np.ascontiguousarray(vectors[query_ids], dtype=np.float32), k + 1)
    ids = np.full((len(query_ids), k), -1, dtype=np.int64)
    for row, i in enumerate(query_ids):
        hits = [j for j in found[row] if j != i and j >= 0][:k]  # the query itself, wherever ties put it
        ids[row, : len(hits)] = hits
    query_labels = labels[query_ids]
    n_relevant = np.bincount(labels, minlength=int(labels.max()) + 1)[query_labels] - 1
    relevant = (ids >= 0) & (labels[np.maximum(ids, 0)] == query_labels[:, None])
    p, m = quality_from_relevance(relevant, n_relevant)
    return RetrievalQuality(
        method=method,
        k=k,
        precision_at_k=p,
        map_at_k=m,
        queries=len(query_ids),
        protocol=held_out_protocol(len(query_ids), n),
        seconds=time.perf_counter() - started,
        chance=float(np.mean(n_relevant / (n - 1))),
    )


def evaluate_held_out(index: ImageIndex, query_files: Sequence[str], k: int = 10) -> RetrievalQuality:
    """:func:`held_out_quality` of ``index`` with its images ``query_files`` (relative paths; those it no longer
    holds are left out) as the queries."""
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}.")
    position = {f: i for i, f in enumerate(index.files)}
    ids = [position[f] for f in query_files if f in position]
    if not ids:
        raise DataError(
            f"None of the {len(query_files)} held-out test photos is in the dataset any more: train the triplet "
            f"embedder again, or measure with a query folder (--queries)."
        )
    return held_out_quality(index.method.name, index.vectors(), index.labels, ids, k, index.method.metric)
