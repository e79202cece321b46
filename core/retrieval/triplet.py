"""Deep + triplet: a small projection head trained with a triplet loss on a frozen backbone's cached features.

The deep index already holds every photo's pooled features, so training never touches an image: a 2-layer head
(:class:`~core.retrieval.projection.ProjectionHead`, to 128-d, L2-normalised) learns from those vectors in
seconds. Batches hold ``m`` photos of each of a few classes (pytorch-metric-learning's ``MPerClassSampler``);
in each batch the miner keeps the semi-hard (or hard) triplets — anchor, a photo of its class, a photo of
another class that is not far enough away — and ``TripletMarginLoss`` pulls the first pair together and pushes
the other apart until the margin separates them.

Only the training split fits the head. Both the deep features it starts from and the head are then measured
the same way, on the same held-out test photos: each is a query against all the other photos of the dataset
(:func:`core.retrieval.metrics.held_out_quality`) — never leave-one-out over the photos the head was fitted on.
The head is stored like a run (:mod:`core.retrieval.projection`) and searched as the ``triplet`` method.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import faiss
import numpy as np
import torch
from pytorch_metric_learning import losses, miners, samplers
from pytorch_metric_learning.utils import common_functions as pml_common

from core.data.splits import stratified_split
from core.data.tensor_cache import stats_fingerprint
from core.errors import ConfigError, DataError, TrainingDiverged
from core.models.backbones import get_backbone
from core.models.device import check_precision
from core.progress import ProgressFn, no_progress
from core.retrieval.embedders import EmbedderConfig
from core.retrieval.index import ImageIndex, open_index
from core.retrieval.metrics import RetrievalQuality, evaluate_held_out, held_out_quality
from core.retrieval.projection import EmbedderRecord, ProjectionHead, backbone_name, project, save_embedder
from core.settings import Settings

EVAL_K = 10  # held-out precision@k and mAP@k are measured at this k when a head is trained
# The head's matrices are small: one torch thread beats two contending for busy cores (flowers, default config,
# 2 shared cores: about 3 s with one thread, 40 s with two).
FIT_THREADS = 1
MINERS = ("semihard", "hard", "all")  # TripletMarginMiner's type_of_triplets


@dataclass
class TripletConfig:
    """How a triplet head is trained; saved with it."""

    backbone: str = "auto"  # the deep features it starts from ("auto": as the deep method picks)
    precision: str = "auto"  # of the deep features (as EmbedderConfig.precision)
    epochs: int = 10
    out_dim: int = 128
    hidden: int = 256
    margin: float = 0.2  # on L2 distances between unit vectors (0 to 2)
    miner: str = "semihard"  # which triplets of a batch the loss sees: see MINERS
    lr: float = 3e-4
    weight_decay: float = 1e-4
    m_per_class: int = 16  # photos of each class in a batch
    batch_size: int = 128  # at most; a whole number of classes times m_per_class
    seed: int = 0  # the split, the head's initial weights and the batches
    test_share: float = 0.2  # of each class, held out to measure (never fitted on)

    def validate(self) -> TripletConfig:
        if self.backbone != "auto":
            get_backbone(self.backbone)
        check_precision(self.precision)
        checks = (
            (1 <= self.epochs <= 10_000, f"The number of epochs must be between 1 and 10000, got {self.epochs}."),
            (2 <= self.out_dim <= 4096, f"The embedding size must be between 2 and 4096, got {self.out_dim}."),
            (1 <= self.hidden <= 8192, f"The hidden layer size must be between 1 and 8192, got {self.hidden}."),
            (0 < self.margin <= 2, f"The triplet margin must be above 0 and at most 2, got {self.margin}."),
            (self.miner in MINERS, f"The miner must be one of {', '.join(MINERS)}, got '{self.miner}'."),
            (0 < self.lr <= 1, f"The learning rate must be above 0 and at most 1, got {self.lr}."),
            (self.weight_decay >= 0, f"The weight decay must be 0 or more, got {self.weight_decay}."),
            (self.m_per_class >= 2, f"A batch needs at least 2 photos per class, got {self.m_per_class}."),
            (
                self.batch_size >= 2 * self.m_per_class,
                f"A batch must hold at least two classes: {2 * self.m_per_class} photos or more, got "
                f"{self.batch_size}.",
            ),
            (self.seed >= 0, f"The seed must be 0 or more, got {self.seed}."),
            (0 < self.test_share <= 0.5, f"The held-out share must be above 0 and at most 0.5, got {self.test_share}."),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- fitting

_pml_random = threading.Lock()  # pytorch-metric-learning samples from one module-level numpy generator
_fitting = threading.Lock()  # one fit at a time in a process, so the thread count is restored as it was


@contextlib.contextmanager
def _torch_threads(n: int):
    with _fitting:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _sample(sampler: samplers.MPerClassSampler, rng: np.random.RandomState) -> np.ndarray:
    """One epoch of the sampler's indices, drawn from ``rng`` (seeded) instead of numpy's global generator."""
    with _pml_random:
        saved, pml_common.NUMPY_RANDOM = pml_common.NUMPY_RANDOM, rng
        try:
            return np.fromiter(iter(sampler), dtype=np.int64)
        finally:
            pml_common.NUMPY_RANDOM = saved


def fit_head(
    features: np.ndarray, labels: np.ndarray, cfg: TripletConfig, on_progress: ProgressFn = no_progress
) -> Tuple[ProjectionHead, List[float]]:
    """A :class:`ProjectionHead` fitted on ``features`` ``(n, d)`` with int ``labels`` by triplet loss with online
    mining, and the mean loss of each epoch. Deterministic for a given ``cfg.seed``."""
    cfg.validate()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    classes = int(len(torch.unique(y)))
    if classes < 2 or len(y) < 4:
        raise DataError(
            f"Triplet training needs photos of at least 2 classes in the training split, got {len(y)} photo(s) of "
            f"{classes} class(es)."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        head = ProjectionHead(x.shape[1], cfg.hidden, cfg.out_dim)
    head.fit_standardisation(x)
    batch = min(cfg.batch_size // cfg.m_per_class, classes) * cfg.m_per_class
    sampler = samplers.MPerClassSampler(y, cfg.m_per_class, batch_size=batch, length_before_new_iter=max(batch, len(y)))
    steps = len(sampler) // batch
    loss_fn = losses.TripletMarginLoss(margin=cfg.margin)
    miner = miners.TripletMarginMiner(margin=cfg.margin, type_of_triplets=cfg.miner)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.RandomState(cfg.seed)
    message = f"training the triplet head ({cfg.miner} mining)"
    curve: List[float] = []
    head.train()
    with _torch_threads(FIT_THREADS):
        for epoch in range(cfg.epochs):
            order, total = _sample(sampler, rng), 0.0
            for step in range(steps):
                idx = torch.from_numpy(order[step * batch : (step + 1) * batch])
                emb, lab = head(x[idx]), y[idx]
                loss = loss_fn(emb, lab, miner(emb, lab))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"The triplet loss became {loss.item()} at epoch {epoch + 1}: lower --lr.")
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
                on_progress(epoch * steps + step + 1, cfg.epochs * steps, message)
            curve.append(total / steps)
    return head.eval(), curve


def train_test_split(labels: Sequence[int], test_share: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row ids of the training and the held-out test photos: a seeded split, stratified by class
    (:func:`core.data.splits.stratified_split`; its one validation photo per class is trained on too)."""
    split = stratified_split(labels, 0.0, test_share, seed)
    return np.array(sorted(split["train"] + split["val"]), dtype=np.int64), np.array(split["test"], dtype=np.int64)


# -------------------------------------------------------------------------------------------- training


def train_embedder(
    root: Path,
    cfg: Optional[TripletConfig] = None,
    settings: Optional[Settings] = None,
    on_progress: ProgressFn = no_progress,
) -> EmbedderRecord:
    """Train a triplet head on the dataset at ``root`` and store it; it is then the ``triplet`` method's for that
    dataset and backbone. The deep features come from the cached deep index (built first when missing: the
    only part that embeds photos); the head is fitted on the training split only, and both the deep features and
    the head are measured on the held-out test split (see :func:`held_out_quality`)."""
    cfg = (cfg or TripletConfig()).validate()
    settings = settings or Settings.from_env()
    root = Path(root).expanduser().resolve()
    started = time.perf_counter()
    deep, _ = open_index(root, "deep", EmbedderConfig(backbone=cfg.backbone, precision=cfg.precision),
                         settings=settings, on_progress=on_progress)  # fmt: skip
    features, labels = deep.vectors(), deep.labels
    train_ids, test_ids = train_test_split(labels, cfg.test_share, cfg.seed)
    if not len(test_ids):
        raise DataError(
            f"{root} is too small to hold photos out for measuring: a class needs at least 3 photos to give one "
            f"to the test split."
        )
    fit_started = time.perf_counter()
    head, curve = fit_head(features[train_ids], labels[train_ids], cfg, on_progress)
    fit_seconds = time.perf_counter() - fit_started
    before = held_out_quality("deep", features, labels, test_ids, EVAL_K, faiss.METRIC_INNER_PRODUCT)
    after = held_out_quality("triplet", project(head, features), labels, test_ids, EVAL_K, faiss.METRIC_INNER_PRODUCT)
    backbone = backbone_name(cfg.backbone, settings)
    stats = {e[0]: tuple(e) for e in deep.meta["entries"]}
    train_files = [deep.files[i] for i in train_ids]
    config = {
        "kind": "triplet",
        "config": cfg.to_dict(),
        "root": str(root),
        "backbone": backbone,
        "deep_embedder": deep.embedder.key,
        "deep_description": deep.embedder.description,
        "feature_dim": int(deep.embedder.dim),
        "classes": list(deep.classes),
        "fingerprint": stats_fingerprint(root, [stats[f] for f in train_files]),  # of the training files
        "train_files": train_files,
        "test_files": [deep.files[i] for i in test_ids],
    }
    summary = {
        "k": before.k,
        "protocol": before.protocol,
        "held_out": {"deep": before.as_dict(), "triplet": after.as_dict()},
        "train_photos": len(train_ids),
        "test_photos": len(test_ids),
        "epochs": cfg.epochs,
        "loss_curve": curve,
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - started,
    }
    return save_embedder(settings, backbone, config, head.state_dict(), summary)


def compare_held_out(
    indexes: Mapping[str, ImageIndex], record: EmbedderRecord, k: int = EVAL_K
) -> Dict[str, RetrievalQuality]:
    """``{method: quality}`` of each index, all on ``record``'s held-out test photos as queries (each against the
    other photos of the dataset): how the Search page and ``retrieval-eval`` compare the triplet method with the
    others on photos it never saw."""
    return {method: evaluate_held_out(index, record.test_files, k) for method, index in indexes.items()}
