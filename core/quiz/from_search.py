"""The question answered by the Search page's indexes: which method found more same-class neighbours for a photo?

Only indexes already built and saved for the dataset are read (:func:`core.retrieval.index.saved_indexes`): nothing
is built or embedded while a student waits, and without them the question is skipped with what to do first. The
photo is one of the dataset's, chosen the same way for the same indexes (so every student gets the same question):
the first, in a seeded order, on which the methods do not all tie, looking at no more than :data:`CANDIDATES`.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Dict, Optional, Union

from core.quiz.questions import Link, Question, Skipped, most
from core.retrieval.index import ImageIndex, index_path, saved_indexes
from core.retrieval.methods import METHODS
from core.settings import Settings

NEIGHBOURS_K = 8  # the Search page's default number of neighbours
CANDIDATES = 12  # photos tried for one where the methods differ
SEARCH_FIRST = "Search a photo on the Search page first: that builds the indexes this question reads."


def indexes_stamp(root: Optional[str], settings: Settings) -> tuple:
    """Changes when an index of the dataset at ``root`` is saved (a cache key for :func:`neighbours_question`)."""
    if not root:
        return ()
    folder = index_path(Path(root).expanduser().resolve(), "", "", settings).parent
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.npz")))
    except OSError:  # removed meanwhile
        return ()


def same_class_counts(indexes: Dict[str, ImageIndex], file: str, k: int = NEIGHBOURS_K) -> Dict[str, int]:
    """``{method: how many of the k nearest other photos to file share its class}``, by each index's stored vectors."""
    out = {}
    for method, index in indexes.items():
        i = index.id_of(file)
        label = index.classes[index.labels[i]]
        out[method] = sum(n.label == label for n in index.neighbours_of(i, k))
    return out


def neighbours_question(root: Optional[str], settings: Settings, k: int = NEIGHBOURS_K) -> Union[Question, Skipped]:
    """Which method found more photos of the same class among a photo's ``k`` nearest? Ties: all correct."""
    if not root:
        return Skipped("search-neighbours", "Choose a dataset in the sidebar, then search a photo on the Search page.")
    saved = saved_indexes(Path(root), settings)
    indexes = {m: saved[m] for m in METHODS if m in saved}  # in the Search page's order
    if len(indexes) < 2:
        return Skipped("search-neighbours", SEARCH_FIRST)
    files = sorted(set.intersection(*(set(ix.files) for ix in indexes.values())))
    if len(files) <= k:
        return Skipped("search-neighbours", f"The dataset needs more than {k} photos for this question.")
    key = "|".join(
        [str(root), *(f"{m}:{ix.meta['embedder_key']}:{ix.meta['fingerprint']}" for m, ix in indexes.items())]
    )
    seed = hashlib.sha1(key.encode()).hexdigest()
    tried = random.Random(seed).sample(files, min(CANDIDATES, len(files)))
    file, counts = tried[0], same_class_counts(indexes, tried[0], k)
    for candidate in tried[1:]:
        if len(set(counts.values())) > 1:
            break
        file, counts = candidate, same_class_counts(indexes, candidate, k)
    any_index = next(iter(indexes.values()))
    label = any_index.classes[any_index.labels[any_index.id_of(file)]]
    names = {m: METHODS[m].display for m in indexes}
    correct = most({names[m]: n for m, n in counts.items()})
    figures = ", ".join(f"{names[m]} {n}" for m, n in counts.items())
    deep = indexes.get("deep")
    return Question(
        id=f"search-neighbours-{seed[:12]}",
        text=f"Among the {k} photos nearest to this {label} photo, which method found the most other {label}?",
        options=tuple(names.values()),
        correct=correct,
        explanation=f"Same-class photos among the {k} nearest: {figures}."
        + (f" Deep features: {deep.meta['embedder']}." if deep is not None else "")
        + " Pixels compare colours spot by spot; deep features compare what the photo shows.",
        link=Link("search", "Search with this photo on the Search page"),
        photo={"root": str(Path(root)), "file": file, "label": label},
    )
