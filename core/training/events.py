"""Events the training engine reports through its ``on_event`` callback.

The CLI turns them into a tqdm bar, the app into live charts, the run store into files. Every event is a
small dataclass; ``asdict(event)`` is JSON-ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from core.runs.store import EPOCH_FIELDS


@dataclass
class RunStarted:
    """The run's folder exists: from here on its state can be read from the run store."""

    run_id: str
    run_dir: str


@dataclass
class PhaseProgress:
    """Work before/after the epochs: decoding images, computing cached features, testing."""

    phase: str  # "decode", "features", "test"
    done: int
    total: Optional[int]
    message: str = ""


@dataclass
class BatchEnd:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based
    batches: int
    loss: float
    images_per_sec: float
    eta_seconds: float  # for the whole run


@dataclass
class EpochEnd:
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_sec: float
    is_best: bool
    best_epoch: int
    best_val_loss: float
    img_size: Optional[int] = None  # the training image size of this epoch (progressive resizing)

    def metrics(self) -> Dict[str, float]:
        """The epoch's row of ``metrics.jsonl``."""
        return {k: getattr(self, k) for k in EPOCH_FIELDS}


@dataclass
class RunEnd:
    status: str  # "finished", "interrupted", "failed"
    summary: Dict = field(default_factory=dict)


Event = object  # any of the dataclasses above
EventFn = Callable[[Event], None]


def no_events(event: Event) -> None:
    """The default listener: ignore events."""
