"""The ways to compare photos, each one a vector of the photo and a FAISS metric.

| method     | vectors                              | FAISS metric             | score                                |
|------------|--------------------------------------|--------------------------|--------------------------------------|
| ``l1``     | raw pixels 86×128, values 0–255      | ``METRIC_L1``            | L1 distance (lower is closer)        |
| ``cosine`` | raw pixels, L2-normalised            | ``METRIC_INNER_PRODUCT`` | cosine similarity (higher is closer) |
| ``deep``   | pooled CNN features, L2-normalised   | ``METRIC_INNER_PRODUCT`` | cosine similarity (higher is closer) |
| ``triplet``| deep features through a trained head | ``METRIC_INNER_PRODUCT`` | cosine similarity (higher is closer) |
|            | (128-d, L2-normalised)               |                          |                                      |

``triplet`` needs a head trained for the dataset and backbone first (:mod:`core.retrieval.triplet`).

Adding a method is one :data:`METHODS` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import faiss
import numpy as np

from core.errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    name: str
    display: str
    embedder: str  # "pixels", "deep" or "triplet"
    metric: int  # faiss metric
    normalise: bool  # L2-normalise vectors (cosine similarity as inner product)
    score_name: str
    higher_is_better: bool

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` (float32, in place) as this method's index holds them: L2-normalised for cosine."""
        if self.normalise and len(vectors):
            faiss.normalize_L2(vectors)
        return vectors

    def format_score(self, score: float, dim: int) -> str:
        """The score as shown under a thumbnail."""
        if self.metric == faiss.METRIC_L1:
            return f"mean |Δ| {score / dim:.1f}"  # average difference per pixel value, 0-255
        return f"cos {score:.3f}"


METHODS: Dict[str, MethodSpec] = {
    "l1": MethodSpec("l1", "L1 pixels", "pixels", faiss.METRIC_L1, False, "L1 distance", False),
    "cosine": MethodSpec(
        "cosine", "Cosine pixels", "pixels", faiss.METRIC_INNER_PRODUCT, True, "cosine similarity", True
    ),
    "deep": MethodSpec("deep", "Deep features", "deep", faiss.METRIC_INNER_PRODUCT, True, "cosine similarity", True),
    "triplet": MethodSpec(
        "triplet", "Deep + triplet", "triplet", faiss.METRIC_INNER_PRODUCT, True, "cosine similarity", True
    ),
}


def get_method(name: str) -> MethodSpec:
    """The registry entry of ``name``; a :class:`ConfigError` listing the choices when there is none."""
    if name not in METHODS:
        raise ConfigError(f"Unknown retrieval method '{name}'. Choose one of: {', '.join(METHODS)}.")
    return METHODS[name]


METHOD_NAMES = tuple(METHODS)
