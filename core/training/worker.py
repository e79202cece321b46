"""The training worker: a process that trains the run store's queued runs one at a time, oldest first.

The app never trains in its own process: a training step would stall every page, and a stuck one could not
be stopped. It queues runs in the store (:meth:`~core.runs.store.RunStore.enqueue`) and starts this worker
(:mod:`core.app.jobs`), which claims them one by one. Everything the pages show flows through the run
store, as for a run from the command line.

One worker per store: it holds ``<runs_dir>/.worker.lock`` for its life, so a second server on the same
store, or a restarted one, never trains two runs at once. The worker stops asking for work after
``idle_seconds`` without any. SIGTERM or SIGINT stop the current run after its batch (kept as
*interrupted*) and leave the rest of the queue for the next worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from core.files import try_lock
from core.runs.store import RunStore, RunWriter
from core.settings import Settings

WORKER_LOCK = ".worker.lock"
IDLE_SECONDS = 60.0  # how long an idle worker waits for new runs before it ends (the app starts a new one)
POLL_SECONDS = 0.5
NICE = 5  # below the web server: a page that waits behind a training step is what a class notices first


def worker_lock(runs_dir: Path) -> Path:
    return Path(runs_dir) / WORKER_LOCK


def train_claimed(writer: RunWriter, settings: Settings, stop: threading.Event) -> str:
    """Train the claimed run of ``writer`` to its end and release it; its final status."""
    # lazy: training imports torch, and the app's server imports this module for the queue's lock and entry point
    from core.training.config import RunConfig  # noqa: PLC0415 (lazy, as said above)
    from core.training.train import train_run  # noqa: PLC0415 (lazy, as said above)

    try:
        cfg = RunConfig.from_dict(_config(writer))
        summary = train_run(cfg, settings, should_stop=lambda: stop.is_set() or writer.stop_requested(), writer=writer)
        return summary.get("status", "finished")
    except Exception:  # bad data, or a bug: the run's summary says why; the queue goes on
        return "failed"
    finally:
        writer.release()


def _config(writer: RunWriter) -> dict:
    return RunStore(writer.dir.parent).get(writer.run_id).config


def work(settings: Settings, idle_seconds: float = IDLE_SECONDS, stop: Optional[threading.Event] = None,
         on_run: Callable[[str, str], None] = lambda run_id, status: None) -> int:  # fmt: skip
    """Train queued runs until none has come for ``idle_seconds`` or ``stop`` is set; how many it trained.
    Returns 0 at once when another worker serves the store."""
    stop = stop or threading.Event()
    store = RunStore(settings.runs_dir)
    lock = try_lock(worker_lock(store.dir))
    if lock is None:
        return 0
    trained, idle_since = 0, time.monotonic()
    try:
        while not stop.is_set():
            writer = store.claim_next()
            if writer is None:
                if time.monotonic() - idle_since >= idle_seconds:
                    break
                stop.wait(POLL_SECONDS)  # the queue lives in files: a run queued by another process announces nothing
                continue
            on_run(writer.run_id, train_claimed(writer, settings, stop))
            trained += 1
            idle_since = time.monotonic()
    finally:
        lock.close()
    return trained


def main(settings: Settings, idle_seconds: float = IDLE_SECONDS) -> None:
    """The worker process's entry point (see :mod:`core.app.jobs`)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        os.nice(NICE)
    except (AttributeError, OSError):  # not POSIX, or not allowed: train at the server's priority
        pass
    work(settings, idle_seconds, stop)
