"""The run store: one folder per run, written as the run goes so that a crash loses at most one epoch.

::

    <runs_dir>/<run_id>/
        config.json     the RunConfig, plus what was resolved at start (classes, weights source, counts)
        status.json     {"status": "running", "pid": ..., "host": ..., "started_at": ...}
        split.json      the manifest: root, classes, train/val/test file lists
        metrics.jsonl   one JSON line per finished epoch, appended and fsynced
        progress.json   live progress (phase, epoch, batch, images/s, ETA), rewritten about once a second
        best.pt         state dict of the best epoch so far (by validation loss), replaced atomically
        summary.json    written at the end: status finished / interrupted / failed, test accuracy, timings
        predictions.json  the best epoch's prediction for each test image (see core.runs.predictions)

A run whose summary is missing and whose process is gone is shown as ``interrupted``; a folder that cannot
be read is shown as ``corrupt`` — listing never fails because of one bad run.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import torch

from core.errors import DataError
from core.files import atomic_write, write_json_atomic

STATUSES = ("running", "finished", "interrupted", "failed", "corrupt")
# The fields of one metrics.jsonl row (one finished epoch), in order.
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_sec",
                "is_best", "img_size")  # fmt: skip


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunWriter:
    """Writes one run's files as it progresses."""

    def __init__(self, run_dir: Path, started_at: str = ""):
        self.dir = Path(run_dir)
        self.started_at = started_at

    @property
    def run_id(self) -> str:
        return self.dir.name

    def write_config(self, config: Dict) -> None:
        write_json_atomic(self.dir / "config.json", config)

    def write_status(self, status: str, **extra) -> None:
        write_json_atomic(
            self.dir / "status.json",
            {
                "status": status,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": self.started_at,
                "updated_at": _now(),
                **extra,
            },
        )

    def write_manifest(self, manifest: Dict) -> None:
        write_json_atomic(self.dir / "split.json", manifest)

    def append_metrics(self, metrics: Dict) -> None:
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_progress(self, progress: Dict) -> None:
        write_json_atomic(self.dir / "progress.json", {**progress, "updated_at": _now()})

    def save_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> None:
        with atomic_write(self.dir / "best.pt") as f:
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, f)

    def write_summary(self, summary: Dict) -> None:
        write_json_atomic(self.dir / "summary.json", summary)
        self.write_status(summary.get("status", "finished"))


@dataclass
class RunRecord:
    """A run as read back from disk."""

    run_id: str
    dir: Path
    status: str
    config: Dict = field(default_factory=dict)
    summary: Dict = field(default_factory=dict)
    metrics: List[Dict] = field(default_factory=list)
    progress: Dict = field(default_factory=dict)
    error: str = ""
    started_at: str = ""

    @property
    def has_checkpoint(self) -> bool:
        return (self.dir / "best.pt").is_file()


def best_epoch_metrics(metrics: List[Dict]) -> Optional[Dict]:
    """The epoch row with the lowest validation loss — the epoch ``best.pt`` holds — or None."""
    rows = [m for m in metrics if m.get("val_loss") is not None]
    return min(rows, key=lambda m: m["val_loss"]) if rows else None


def load_manifest(run_dir: Path) -> Dict:
    """A run's ``split.json``: its data root, classes and the files of each split."""
    return json.loads((Path(run_dir) / "split.json").read_text())


def _read_metrics(path: Path) -> List[Dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash: keep what came before it
    return rows


def load_run(run_dir: Path) -> RunRecord:
    """Read a run folder; never raises for a damaged run (status ``corrupt`` with the reason instead)."""
    run_dir = Path(run_dir)
    rec = RunRecord(run_id=run_dir.name, dir=run_dir, status="corrupt")
    try:
        rec.config = json.loads((run_dir / "config.json").read_text())
        status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
        rec.started_at = status.get("started_at", "")
        rec.metrics = _read_metrics(run_dir / "metrics.jsonl")
        try:
            rec.progress = json.loads((run_dir / "progress.json").read_text())
        except (OSError, ValueError):
            rec.progress = {}
        if (run_dir / "summary.json").exists():
            rec.summary = json.loads((run_dir / "summary.json").read_text())
            rec.status = rec.summary.get("status", "finished")
            rec.error = rec.summary.get("error", "")
        elif (
            status.get("status") == "running"
            and status.get("host") == socket.gethostname()
            and _pid_alive(int(status.get("pid", -1)))
        ):
            rec.status = "running"
        else:
            rec.status = "interrupted"
            rec.error = "the training process ended before the run finished"
    except (OSError, ValueError, TypeError) as e:
        rec.status = "corrupt"
        rec.error = f"{type(e).__name__}: {e}"
    return rec


class RunStore:
    def __init__(self, runs_dir: Path):
        self.dir = Path(runs_dir)

    def create(self, regime: str, backbone: str) -> RunWriter:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = self.dir / f"{stamp}-{regime}-{backbone}-{secrets.token_hex(2)}"
        run_dir.mkdir()
        writer = RunWriter(run_dir, started_at=_now())
        writer.write_status("running")
        return writer

    def list_runs(self) -> List[RunRecord]:
        """Every run, newest first; damaged folders are included with status ``corrupt``."""
        if not self.dir.is_dir():
            return []
        runs = [load_run(d) for d in self.dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        return sorted(runs, key=lambda r: r.run_id, reverse=True)

    def get(self, run: str) -> RunRecord:
        path = Path(run)
        if not path.is_dir():
            path = self.dir / run
        if not path.is_dir():
            raise DataError(f"Run not found: '{run}' (looked in {self.dir}).")
        return load_run(path)
