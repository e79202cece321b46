"""Trained projection heads: the small network on top of frozen deep features that the ``triplet`` method
searches with, where it is stored, and the embedder that applies it.

A head is fitted by :mod:`core.retrieval.triplet` on one dataset's cached deep features and stored like a run,
in a dot-folder of the run store that the run listing skips::

    <runs_dir>/.embedders/<id>/
        config.json    what was trained on what: the config, dataset root, backbone, classes, fingerprint of the
                       training files, the train and test file lists
        head.pt        the head's state dict (torch.save; loaded with weights_only=True)
        summary.json   held-out precision@k / mAP@k of the deep features and of the head, seconds, loss curve

The folder is written under a temporary name and renamed into place in one step, so a reader sees a whole
embedder or none. The ``triplet`` embedder is the deep embedder followed by the latest head trained for the
dataset and backbone; its key holds a hash of the head's weights, so retraining makes a new index.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from core.errors import ConfigError, DataError
from core.files import atomic_write, make_dirs, storage_error, write_json_atomic
from core.lru import LockedLRU
from core.models.backbones import BACKBONES, pick_pretrained_backbone
from core.progress import ProgressFn, no_progress
from core.retrieval.embedders import DeepEmbedder, Embedder, EmbedderConfig, get_embedder
from core.settings import Settings

EMBEDDERS = ".embedders"  # under the runs dir; a dot-folder, so the run listing leaves it alone
TRAIN_BUTTON = "Train deep + triplet"  # the Search page's button, named in the message when none is trained
STORE_VERSION = 1

# (paths, on_progress) -> (deep vectors, which paths could be read): where a triplet embedder gets the deep
# vectors of dataset files without embedding them again (the cached deep index; see core.retrieval.index)
DeepVectors = Callable[[Sequence[Path], ProgressFn], Tuple[np.ndarray, List[bool]]]


class ProjectionHead(torch.nn.Module):
    """Standardise the input features (the training set's mean and spread, kept as buffers), two linear layers
    with a ReLU between them, then L2-normalise: cosine similarity is the inner product of the outputs."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out_dim)
        )

    def fit_standardisation(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.scale.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net((x - self.mean) / self.scale), dim=1)


def project(head: ProjectionHead, features: np.ndarray, batch: int = 4096) -> np.ndarray:
    """float32 ``(n, out_dim)``: ``features`` through ``head`` (unit vectors)."""
    head.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch):
            out.append(head(torch.from_numpy(np.ascontiguousarray(features[start : start + batch]))).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, head.net[-1].out_features), np.float32)


# ------------------------------------------------------------------------------------------------- store


@dataclass
class EmbedderRecord:
    """A stored head, as read back from disk."""

    id: str
    dir: Path
    config: Dict
    summary: Dict = field(default_factory=dict)

    @property
    def root(self) -> str:
        return self.config["root"]

    @property
    def backbone(self) -> str:
        return self.config["backbone"]

    @property
    def train_files(self) -> List[str]:
        return self.config["train_files"]

    @property
    def test_files(self) -> List[str]:
        return self.config["test_files"]

    @property
    def weights(self) -> Path:
        return self.dir / "head.pt"

    def describe(self) -> str:
        """One line for people: the id, when, what it was trained on, and its held-out figures."""
        s, c = self.summary, self.config
        held = s.get("held_out", {})
        deep, trip = held.get("deep", {}), held.get("triplet", {})
        k = s.get("k", "k")
        return (
            f"{self.id}: {c['config']['epochs']} epochs on {len(self.train_files):,} photos of {c['root']} "
            f"({BACKBONES[self.backbone].display.split(' (')[0] if self.backbone in BACKBONES else self.backbone}); "
            f"held-out precision@{k} deep {deep.get('precision_at_k', float('nan')):.3f} → "
            f"deep + triplet {trip.get('precision_at_k', float('nan')):.3f}"
        )


def backbone_name(backbone: str, settings: Settings) -> str:
    """``backbone``, or for ``"auto"`` the one deep features use by default here (as the deep embedder picks)."""
    return backbone if backbone != "auto" else pick_pretrained_backbone(settings)[0]


def save_embedder(
    settings: Settings, backbone: str, config: Dict, state_dict: Dict[str, torch.Tensor], summary: Dict
) -> EmbedderRecord:
    """A new stored embedder: its folder written under a temporary name, then renamed into place."""
    base = make_dirs(Path(settings.runs_dir) / EMBEDDERS)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-triplet-{backbone}-{secrets.token_hex(2)}"
    tmp = base / f".{name}.tmp{os.getpid()}"  # what core.files.remove_stale_temporaries cleans after a crash
    config = {**config, "version": STORE_VERSION, "id": name, "created_ns": time.time_ns()}
    try:
        make_dirs(tmp)
        write_json_atomic(tmp / "config.json", config)
        with atomic_write(tmp / "head.pt") as f:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, f)
        write_json_atomic(tmp / "summary.json", summary)
        try:
            os.rename(tmp, base / name)
        except OSError as e:
            raise storage_error(e, base / name) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EmbedderRecord(name, base / name, config, summary)


def load_embedder(folder: Path) -> EmbedderRecord:
    """The stored embedder in ``folder``; a :class:`DataError` saying what is wrong when it cannot be read."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        if not isinstance(config, dict) or not isinstance(summary, dict):
            raise ValueError("config.json or summary.json is not a JSON object")
        missing = [k for k in ("root", "backbone", "config", "train_files", "test_files") if k not in config]
        if missing:
            raise ValueError(f"config.json has no {', '.join(missing)}")
        if not (folder / "head.pt").is_file():
            raise ValueError("head.pt is missing")
    except (OSError, ValueError) as e:
        raise DataError(f"The trained embedder in {folder} cannot be read ({e}). Train it again.") from e
    return EmbedderRecord(folder.name, folder, config, summary)


def list_embedders(settings: Settings) -> List[EmbedderRecord]:
    """Every stored embedder that can be read, newest first (damaged folders are left out)."""
    base = Path(settings.runs_dir) / EMBEDDERS
    if not base.is_dir():
        return []
    out = []
    for d in base.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            try:
                out.append(load_embedder(d))
            except DataError:
                continue
    return sorted(out, key=lambda r: (r.config.get("created_ns", 0), r.id), reverse=True)


def latest_embedder(root: Path, backbone: str, settings: Settings) -> Optional[EmbedderRecord]:
    """The newest embedder trained on the dataset at ``root`` with ``backbone`` ("auto" as deep features
    resolve it), or None."""
    root_s, name = str(Path(root).expanduser().resolve()), backbone_name(backbone, settings)
    return next((r for r in list_embedders(settings) if r.root == root_s and r.backbone == name), None)


def no_embedder_message(root: Path, backbone: str) -> str:
    shown = BACKBONES[backbone].display.split(" (")[0] if backbone in BACKBONES else backbone
    return (
        f"No triplet embedder is trained for {root} with the ImageNet {shown} backbone yet. Train one with "
        f"`python -m core train-embedder --data {root} --backbone {backbone}` (seconds: it learns from the cached "
        f"deep features), or press '{TRAIN_BUTTON}' on the Search page."
    )


# ---------------------------------------------------------------------------------------------- embedder


def _file_sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def load_head(record: EmbedderRecord) -> Tuple[ProjectionHead, str]:
    """The stored head (eval mode, CPU) and the hash of its weights file."""
    try:
        state = torch.load(record.weights, map_location="cpu", weights_only=True)
        c = record.config["config"]
        head = ProjectionHead(int(record.config["feature_dim"]), int(c["hidden"]), int(c["out_dim"]))
        head.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise DataError(f"The trained head {record.weights} cannot be loaded ({e}). Train it again.") from e
    return head.eval(), _file_sha(record.weights)


class TripletEmbedder(Embedder):
    """The deep embedder followed by a trained :class:`ProjectionHead`: unit vectors of the head's size."""

    kind = "triplet"

    def __init__(
        self, deep: DeepEmbedder, head: ProjectionHead, weights_sha: str, record: EmbedderRecord,
        deep_vectors: Optional[DeepVectors] = None,
    ):  # fmt: skip
        self.deep, self.head, self.record = deep, head, record
        self.deep_vectors = deep_vectors
        self.dim = int(head.net[-1].out_features)
        self.key = f"triplet-{weights_sha[:16]}-{deep.key}"
        self.description = f"{deep.description} + triplet head {record.id}"
        self.held_out = list(record.test_files)

    @property
    def decoded_shape(self) -> Tuple[int, ...]:
        return self.deep.decoded_shape

    def decode(self, source) -> np.ndarray:
        return self.deep.decode(source)

    def embed_decoded(self, batch: np.ndarray) -> np.ndarray:
        return project(self.head, self.deep.embed_decoded(batch))

    def embed_files(
        self, paths: Sequence[Path], on_progress: ProgressFn = no_progress
    ) -> Tuple[np.ndarray, List[bool]]:
        """Dataset files: their deep vectors from ``deep_vectors`` (no image decoded twice) through the head."""
        if self.deep_vectors is None:
            return super().embed_files(paths, on_progress)
        vectors, ok = self.deep_vectors(paths, on_progress)
        return project(self.head, vectors), ok


_heads: LockedLRU[Tuple[ProjectionHead, str]] = LockedLRU(maxsize=4)


def triplet_embedder(
    root: Path, cfg: EmbedderConfig, settings: Settings, deep_vectors: Optional[DeepVectors] = None
) -> TripletEmbedder:
    """The ``triplet`` embedder of the dataset at ``root``: the deep embedder of ``cfg`` and the latest head
    trained for that dataset and backbone. A :class:`ConfigError` saying what to run when none is trained."""
    if cfg.run:
        raise ConfigError(
            "The triplet method is trained on ImageNet backbone features, not on a fine-tuned run's: leave out "
            "--run (on the Search page, choose an ImageNet backbone as the deep features)."
        )
    root = Path(root).expanduser().resolve()
    name = backbone_name(cfg.backbone, settings)
    record = latest_embedder(root, name, settings)
    if record is None:
        raise ConfigError(no_embedder_message(root, name))
    st = record.weights.stat()
    head, sha = _heads.get_or_build((str(record.weights), st.st_size, st.st_mtime_ns), lambda: load_head(record))
    deep = get_embedder("deep", EmbedderConfig(backbone=name, precision=cfg.precision, runtime=cfg.runtime), settings)
    if deep.dim != head.mean.shape[0]:
        raise DataError(
            f"The trained head {record.id} takes {head.mean.shape[0]} features, but the {name} backbone gives "
            f"{deep.dim}. Train it again."
        )
    return TripletEmbedder(deep, head, sha, record, deep_vectors)
