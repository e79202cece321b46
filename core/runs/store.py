"""The run store: one folder per run, written as the run goes so that a crash loses at most one epoch.

::

    <runs_dir>/<run_id>/
        config.json     the RunConfig, plus what was resolved at start (classes, weights source, counts)
        status.json     {"status": "queued" | "running" | ..., "owner": ..., "pid": ..., "started_at": ...}
        run.lock        flocked by the process training the run, for as long as it runs
        stop.json       a request to stop (or, while queued, to cancel) the run
        split.json      the manifest: root, classes, train/val/test file lists
        metrics.jsonl   one JSON line per finished epoch, appended and fsynced
        progress.json   live progress (phase, epoch, batch, images/s, ETA), rewritten about once a second
        progress.jsonl  the run's timeline, for replaying it (core.app.replay): one line per status change
                        ({"at": unix s, "status": ...}), per finished epoch ({"at", "epoch"}) and per progress
                        snapshot ({"at", "progress": {...}}, at most one per TIMELINE_EVERY_SECONDS plus each
                        epoch's last batch, MAX_TIMELINE_LINES in all): appended, not fsynced, best effort
        best.pt         state dict of the best epoch so far (by validation loss), replaced atomically
        summary.json    written at the end: status finished / interrupted / failed / cancelled, test accuracy...
        predictions.json  the best epoch's prediction for each test image (see core.runs.predictions)

The store is also the training queue: a launch from the app writes each run's folder with status
``queued`` (:meth:`RunStore.enqueue`), and the training worker (:mod:`core.training.worker`) claims them
oldest first. So a queue survives a restart of the server.

A run is ``running`` while its ``run.lock`` is held; the operating system releases it when the process
dies, however it dies, and a reused PID cannot fake it. A run that says ``running`` without the lock is
shown ``interrupted``; a folder that cannot be read is shown ``corrupt`` — listing never fails because of
one bad run.

``progress.jsonl`` is a record, not a state: nothing reads it while the run trains, a crash losing its last
lines costs a replay a few seconds, and a run without it (written before it existed) replays from its
``status.json`` start time, its epochs' ``seconds`` and its summary. At most 5,000 lines of about 150 bytes:
under a megabyte however long the run.
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
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from core.errors import DataError
from core.files import atomic_write, is_locked, make_dirs, storage_error, strict_json, try_lock, write_json_atomic
from core.models.regimes import is_baseline

if TYPE_CHECKING:
    import torch

STATUSES = ("queued", "running", "finished", "interrupted", "failed", "cancelled", "corrupt")
ACTIVE = ("queued", "running")  # a run that is waiting or training: what Stop applies to
ENDED = ("finished", "interrupted", "failed", "cancelled")  # what a summary can say
LOCK_FILE, STOP_FILE = "run.lock", "stop.json"
# The fields of one metrics.jsonl row (one finished epoch), in order.
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_sec",
                "is_best", "img_size")  # fmt: skip


CANCELLED = "stopped before it started"
TIMELINE = "progress.jsonl"
TIMELINE_EVERY_SECONDS = 2.0  # progress snapshots kept for a replay: one per 2 s, and every epoch's last batch
MAX_TIMELINE_LINES = 5000  # then only status changes and epochs: a bounded file however long the run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_training(run_dir: Path, status: Dict) -> bool:
    """Whether a process is training the run now: it holds ``run.lock``. Runs written before the lock
    existed, or where flocks are not available, fall back to the PID in ``status.json``."""
    if status.get("host") != socket.gethostname():
        return False  # another machine's process: its lock and PID mean nothing here
    held = is_locked(run_dir / LOCK_FILE) if (run_dir / LOCK_FILE).exists() else None
    return _pid_alive(status) if held is None else held


def _pid_alive(status: Dict) -> bool:
    """Whether the process ``status.json`` names is alive (False for a pid that is not a whole number)."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


class RunWriter:
    """Writes one run's files as it progresses. :meth:`hold` marks the run as being trained by this process."""

    def __init__(self, run_dir: Path, started_at: str = "", owner: str = "", queued_at: Optional[int] = None):
        self.dir = Path(run_dir)
        self.started_at = started_at
        self.owner = owner  # the browser session that launched it ("" from the command line)
        self.queued_at = queued_at
        self._lock = None
        self._timeline_lines, self._last_snapshot = 0, {"at": -1e18, "phase": None}

    @property
    def run_id(self) -> str:
        return self.dir.name

    def hold(self) -> RunWriter:
        """Take ``run.lock`` for as long as this process trains the run (see :func:`is_training`)."""
        if self._lock is None:
            self._lock = try_lock(self.dir / LOCK_FILE, wait=True)
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def stop_requested(self) -> bool:
        """Whether someone asked to stop this run (:meth:`RunStore.request_stop`): one stat, cheap per batch."""
        return (self.dir / STOP_FILE).exists()

    def write_config(self, config: Dict) -> None:
        write_json_atomic(self.dir / "config.json", config)

    def record(self, entry: Dict, snapshot: bool = False) -> None:
        """Append ``entry`` to the run's timeline (``progress.jsonl``), stamped with the time. Best effort: a
        replay is not worth failing a run for, so a write that fails is dropped. A ``snapshot`` (progress) line
        is kept only within the file's budget (see the module docstring)."""
        if snapshot and self._timeline_lines >= MAX_TIMELINE_LINES:
            return
        self._timeline_lines += 1
        try:
            with open(self.dir / TIMELINE, "a") as f:
                f.write(json.dumps(strict_json({"at": round(time.time(), 3), **entry}), allow_nan=False) + "\n")
        except OSError:
            pass

    def _snapshot(self, progress: Dict) -> None:
        """A progress snapshot for the timeline: at most one per TIMELINE_EVERY_SECONDS, but always a new phase
        and every epoch's last batch (where the replay's bar must be full)."""
        now, last = time.time(), self._last_snapshot
        ends_epoch = progress.get("batch") is not None and progress.get("batch") == progress.get("batches")
        if now - last["at"] >= TIMELINE_EVERY_SECONDS or progress.get("phase") != last["phase"] or ends_epoch:
            self._last_snapshot = {"at": now, "phase": progress.get("phase")}
            self.record({"progress": progress}, snapshot=True)

    def write_status(self, status: str, **extra) -> None:
        write_json_atomic(
            self.dir / "status.json",
            {
                "status": status,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": self.started_at,
                "updated_at": _now(),
                "owner": self.owner,
                **({"queued_at": self.queued_at} if self.queued_at is not None else {}),
                **extra,
            },
        )
        self.record({"status": status})

    def write_manifest(self, manifest: Dict) -> None:
        write_json_atomic(self.dir / "split.json", manifest)

    def append_metrics(self, metrics: Dict) -> None:
        path = self.dir / "metrics.jsonl"
        try:
            with open(path, "a") as f:
                f.write(json.dumps(strict_json(metrics), allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise storage_error(e, path) from e
        if isinstance(metrics.get("epoch"), int):
            self.record({"epoch": metrics["epoch"]})

    def write_progress(self, progress: Dict) -> None:
        write_json_atomic(self.dir / "progress.json", {**progress, "updated_at": _now()})
        self._snapshot(progress)

    def save_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> None:
        import torch  # noqa: PLC0415 (lazy: torch takes seconds to import; the app's router and Home paint without it)

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
    owner: str = ""  # the browser session that launched it
    queued_at: Optional[int] = None  # ns since the epoch, for runs launched into the queue: their order
    stop_requested: bool = False
    process: Dict = field(default_factory=dict)  # the host and pid that status.json names

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def has_checkpoint(self) -> bool:
        return (self.dir / "best.pt").is_file()


def saved_augment(train: Dict) -> str:
    """A saved config's ``train.augment`` (core.training.augment.AUGMENTS); for a run saved before the choice
    existed, what it did: the notebook's flip + rotation, unless both its ``hflip`` and ``rotation_degrees`` were
    off."""
    if "augment" in train:
        return str(train["augment"])
    return "flip-rotate" if train.get("hflip", True) or (train.get("rotation_degrees", 10.0) or 0) > 0 else "off"


def best_epoch_metrics(metrics: List[Dict]) -> Optional[Dict]:
    """The epoch row with the lowest validation loss — the epoch ``best.pt`` holds — or None."""
    rows = [m for m in metrics if m.get("val_loss") is not None]
    return min(rows, key=lambda m: m["val_loss"]) if rows else None


def _file_and_label(item) -> bool:
    return isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], int)


def load_manifest(run_dir: Path) -> Dict:
    """A run's ``split.json``: its data root, classes and the files of each split, as ``[[file, label], ...]``
    per split. Raises :class:`DataError` saying what is wrong when it is missing or damaged."""
    path = Path(run_dir) / "split.json"
    try:
        manifest = _json_object(path)
        splits = manifest.get("splits")
        if not isinstance(manifest.get("root"), str) or not isinstance(splits, dict) or "test" not in splits:
            raise ValueError("split.json has no data root, or no test split")
        for name, items in splits.items():
            if not isinstance(items, list) or not all(_file_and_label(i) for i in items):
                raise ValueError(f"split.json's {name!r} split is not a list of [file, label] pairs")
    except ValueError as e:
        raise DataError(f"Run folder {path.parent} cannot be evaluated on its own test split: {e}. Evaluate it "
                        f"on a folder instead (--data PATH), or train the run again.") from e  # fmt: skip
    return manifest


def _json_lines(text: str, keep: Callable[[Dict], bool]) -> List[Dict]:
    """The JSON objects of a ``.jsonl`` file's ``text`` that ``keep`` accepts, in order. A torn line (a crash while
    writing) or one ``keep`` refuses is skipped on its own; the lines around it are kept."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and keep(row):
            rows.append(row)
    return rows


def _read_metrics(path: Path) -> List[Dict]:
    """The epochs of ``metrics.jsonl``: its rows that are an epoch (an object with a whole-number ``epoch``)."""
    return _json_lines(path.read_text(), lambda row: isinstance(row.get("epoch"), int)) if path.is_file() else []


def read_timeline(run_dir: Path) -> List[Dict]:
    """The lines of a run's ``progress.jsonl`` (see the module docstring), in the order written; [] when it has
    none. A torn line, or one without a numeric ``at``, is skipped on its own."""
    try:
        text = (Path(run_dir) / TIMELINE).read_text()
    except OSError:
        return []
    return _json_lines(text, lambda row: isinstance(row.get("at"), (int, float)) and not isinstance(row["at"], bool))


def _json_object(path: Path) -> Dict:
    """The JSON object in ``path``; a ValueError naming the file and what is wrong with it otherwise."""
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path.name} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except OSError as e:
        raise ValueError(f"{path.name} cannot be read ({e.strerror or e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path.name} holds a JSON {type(value).__name__}, not an object")
    return value


CONFIG_SECTIONS = ("data", "model", "train")


def load_run(run_dir: Path) -> RunRecord:
    """Read a run folder; never raises for a damaged run (status ``corrupt`` with the reason instead)."""
    run_dir = Path(run_dir)
    rec = RunRecord(run_id=run_dir.name, dir=run_dir, status="corrupt")
    try:
        config = _json_object(run_dir / "config.json")
        missing = [s for s in CONFIG_SECTIONS if not isinstance(config.get(s), dict)]
        if missing:
            raise ValueError(f"config.json has no valid {', '.join(missing)} section")
        rec.config = config  # kept only when its sections are there: readers can rely on them
        status = _json_object(run_dir / "status.json") if (run_dir / "status.json").exists() else {}
        rec.started_at = str(status.get("started_at", ""))
        rec.owner = str(status.get("owner") or "")
        rec.queued_at = status.get("queued_at") if isinstance(status.get("queued_at"), int) else None
        rec.stop_requested = (run_dir / STOP_FILE).exists()
        rec.process = {k: status.get(k) for k in ("host", "pid")}
        rec.metrics = _read_metrics(run_dir / "metrics.jsonl")
        try:
            rec.progress = _json_object(run_dir / "progress.json")
        except ValueError:  # rewritten every second: missing or torn only means no live progress to show
            rec.progress = {}
        if (run_dir / "summary.json").exists():
            summary = _json_object(run_dir / "summary.json")
            if summary.get("status", "finished") not in ENDED:
                raise ValueError(f"summary.json says the run is {summary['status']!r}, not {' / '.join(ENDED)}")
            rec.summary, rec.status = summary, summary.get("status", "finished")
            rec.error = str(summary.get("error", ""))
        elif status.get("status") == "queued":
            rec.status, rec.error = ("cancelled", CANCELLED) if rec.stop_requested else ("queued", "")
        elif status.get("status") == "running" and is_training(run_dir, status):
            rec.status = "running"
        else:
            rec.status = "interrupted"
            rec.error = "the training process ended before the run finished"
    except (OSError, ValueError) as e:  # ValueErrors name the file; an OSError names it in its message
        rec.status, rec.error = "corrupt", str(e)
    return rec


def active_sources(runs: List[RunRecord]) -> List[str]:
    """The data sources of the runs that are queued or running: what the upload cache must keep."""
    return [r.config["data"]["source"] for r in runs if r.active and "source" in r.config.get("data", {})]


class RunStore:
    def __init__(self, runs_dir: Path):
        self.dir = Path(runs_dir)

    def _new_folder(self, regime: str, backbone: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        model = "" if is_baseline(regime) else f"-{backbone}"  # a baseline's model is its own, not the backbone
        return make_dirs(make_dirs(self.dir) / f"{stamp}-{regime}{model}-{secrets.token_hex(2)}")

    def create(self, regime: str, backbone: str) -> RunWriter:
        """A new run, trained by this process from now on."""
        writer = RunWriter(self._new_folder(regime, backbone), started_at=_now()).hold()
        writer.write_status("running")
        return writer

    def enqueue(self, config: Dict, owner: str = "") -> str:
        """A new run waiting in the queue (``config`` as :meth:`RunConfig.to_dict` gives it); its run id."""
        model = config["model"]
        writer = RunWriter(self._new_folder(model["regime"], model["backbone"]), owner=owner,
                           queued_at=time.time_ns())  # fmt: skip
        writer.write_config(config)
        writer.write_status("queued")  # last: a reader sees a queued run only once its config is there
        return writer.run_id

    def queued(self) -> List[RunRecord]:
        """The runs waiting in the queue (cancelled ones left out), first in line first."""
        runs = [r for r in self.list_runs() if r.status == "queued"]
        return sorted(runs, key=lambda r: (r.queued_at or 0, r.run_id))

    def claim_next(self) -> Optional[RunWriter]:
        """The first queued run, now held by this process and marked running; None when nothing waits. Runs
        cancelled while queued get their final summary here. The caller (one worker per store: see
        :mod:`core.training.worker`) trains the run and then calls :meth:`RunWriter.release`."""
        for rec in self.queued():
            writer = RunWriter(rec.dir, started_at=_now(), owner=rec.owner, queued_at=rec.queued_at).hold()
            if writer.stop_requested():  # cancelled between listing and claiming
                writer.write_summary({"run_id": rec.run_id, "status": "cancelled", "error": CANCELLED})
                writer.release()
                continue
            writer.write_status("running")
            return writer
        return None

    def request_stop(self, run_id: str, by: str = "") -> bool:
        """Ask the run's trainer to stop it after the current batch (a queued run is cancelled). False when
        the run is not queued or running."""
        rec = self.get(run_id)
        if not rec.active:
            return False
        write_json_atomic(rec.dir / STOP_FILE, {"by": by, "at": _now()})
        return True

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
