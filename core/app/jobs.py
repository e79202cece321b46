"""Training for the app: a launch queues runs in the run store, and one worker process trains them.

A classroom of students pressing "Train" at once must not oversubscribe a 2-core CPU, nor stall the pages:
:meth:`Training.submit` writes each run's folder with status *queued* and returns at once; a worker
process (:mod:`core.training.worker`) trains the queue oldest first. The queue is the run store, so it
survives a restart, and everything the pages show is read from there.

This module supervises the worker from the server, on a small monitor thread that runs while anything is
queued or running:

* it starts the worker when runs are queued — also right after the server starts, which resumes a queue
  the last server left — and starts another when it dies (a run killed mid-batch shows *interrupted*, the
  next one starts);
* it makes Stop always work: the worker sees a stop request at its next batch and keeps the run as
  *interrupted*; if the run has not ended ``STOP_GRACE_SECONDS`` later, the worker is killed.

Stop belongs to whoever launched the run (the browser session's ``owner`` token) and to the teacher.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional

from core.errors import TransferLabError
from core.files import is_locked
from core.runs.listing import Listing, shared_listing
from core.runs.store import RunRecord, RunStore
from core.settings import Settings
from core.training.worker import IDLE_SECONDS, main, worker_lock

if TYPE_CHECKING:  # only named in annotations: importing it loads torch, which the app's first paint does without
    from core.training.config import RunConfig

STOP_GRACE_SECONDS = 15.0  # a run that has not stopped this long after Stop is ended by killing the worker
MONITOR_SECONDS = 0.5
RESTART_SECONDS = 2.0  # a worker that died this soon after starting is not restarted at once (no spawn storm)


class NotYours(TransferLabError):
    """Stop pressed on a run another browser session launched."""


def may_stop(run, owner: str, teacher: bool = False) -> bool:
    """Whether a browser session (``owner``, its token; ``teacher`` when it is in teacher mode) may stop ``run``
    (a :class:`RunRecord` or a :class:`~core.app.live.LiveRun`: anything with ``active`` and ``owner``)."""
    return run.active and (teacher or (bool(owner) and run.owner == owner))


class Training:
    """The queue of one run store, as the app sees it: submit, stop, and watch (through :attr:`listing`)."""

    def __init__(self, settings: Settings, idle_seconds: float = IDLE_SECONDS):
        self.settings = settings
        self.store = RunStore(settings.runs_dir)
        self.listing: Listing = shared_listing(settings.runs_dir)
        self.idle_seconds = idle_seconds
        self._spawn = multiprocessing.get_context("spawn")  # a clean process: no copy of the server's threads
        self._process = None
        self._started_at = -float("inf")
        self._monitor: Optional[threading.Thread] = None
        self._stops: Dict[str, float] = {}  # run id -> when Stop was pressed
        self._lock = threading.Lock()
        self.workers_started = 0

    # --------------------------------------------------------------------------------------------- public

    def submit(self, configs: Iterable[RunConfig], owner: str = "") -> List[str]:
        """Queue runs (all of them, or none when one is invalid: raises ConfigError); their run ids."""
        configs = [cfg.validate() for cfg in configs]
        ids = [self.store.enqueue(cfg.to_dict(), owner) for cfg in configs]
        self.listing.expire()  # the page drawn next shows the launch
        self.wake()
        return ids

    def stop(self, run_id: str, owner: str, teacher: bool = False) -> bool:
        """Stop a running run after its current batch, or cancel a queued one. False when it is already over;
        :class:`NotYours` when this session may not stop it."""
        run = self.store.get(run_id)
        if not run.active:
            return False
        if not may_stop(run, owner, teacher):
            raise NotYours(f"Run {run_id} was launched by another browser; only it, or the teacher, can stop it.")
        if not self.store.request_stop(run_id, by="teacher" if teacher else owner):
            return False
        with self._lock:
            self._stops[run_id] = time.monotonic()
        self.listing.expire()  # the page drawn next shows it stopping
        self.wake()
        return True

    def runs(self) -> List[RunRecord]:
        """The store's runs, newest first, from the server's shared listing (at most half a second old)."""
        return self.listing.runs()

    def busy(self) -> bool:
        return any(r.active for r in self.runs())

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is queued or running (for tests and scripts). True if it became idle."""
        end = time.monotonic() + timeout
        while any(r.active for r in self.listing.runs(max_age=0)):
            if time.monotonic() > end:
                return False
            time.sleep(0.1)  # the worker is another process, and the store announces nothing: poll it
        return True

    def wake(self) -> None:
        """Make sure the monitor runs (it starts the worker when runs are queued)."""
        with self._lock:
            if self._monitor is None or not self._monitor.is_alive():
                self._monitor = threading.Thread(target=self._watch, name="transferlab-training", daemon=True)
                self._monitor.start()

    def worker_pid(self) -> Optional[int]:
        with self._lock:
            return self._process.pid if self._process is not None and self._process.is_alive() else None

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the worker (its run is kept as interrupted, the queue stays for the next start)."""
        with self._lock:
            process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # SIGTERM: the worker stops after the current batch
            process.join(timeout)
            if process.is_alive():
                process.kill()

    # ------------------------------------------------------------------------------------------- monitor

    def _watch(self) -> None:
        while True:
            runs = self.listing.runs(max_age=0)  # fresh: a run queued just before wake() must be seen
            queued = any(r.status == "queued" for r in runs)
            running = {r.run_id for r in runs if r.status == "running"}
            with self._lock:
                alive = self._process is not None and self._process.is_alive()
                if (
                    queued
                    and not alive
                    and time.monotonic() - self._started_at > RESTART_SECONDS
                    and not is_locked(worker_lock(self.store.dir))
                ):
                    self._start_worker()
                    alive = True
                self._escalate_stops(running, alive)
                if not queued and not running and not alive:
                    self._monitor = None
                    return
            time.sleep(MONITOR_SECONDS)

    def _start_worker(self) -> None:  # with the lock held
        self._process = self._spawn.Process(
            target=main, args=(self.settings, self.idle_seconds), name="transferlab-worker", daemon=True
        )
        with main_module_hidden():
            self._process.start()
        self._started_at = time.monotonic()
        self.workers_started += 1

    def _escalate_stops(self, running: set, alive: bool) -> None:  # with the lock held
        now = time.monotonic()
        for run_id, asked in list(self._stops.items()):
            if run_id not in running:
                del self._stops[run_id]  # it stopped
            elif alive and now - asked > STOP_GRACE_SECONDS:
                self._process.kill()  # a step that never ends: the run shows interrupted, the queue goes on
                del self._stops[run_id]


@contextmanager
def main_module_hidden():
    """A spawned child first runs its parent's ``__main__`` script again. In the server, that is the app itself:
    Streamlit makes the page script ``__main__`` while it runs, so the worker would run the whole app in bare
    mode (or fail in it) before training. Hide it while :meth:`multiprocessing.Process.start` prepares the
    child; a script run that replaces it meanwhile keeps its own."""
    stub = types.ModuleType("__main__")  # no __file__ and no __spec__: the child imports nothing as main
    real = sys.modules.get("__main__")
    sys.modules["__main__"] = stub
    try:
        yield
    finally:
        if sys.modules.get("__main__") is stub and real is not None:
            sys.modules["__main__"] = real


_shared: Dict[Path, Training] = {}
_shared_lock = threading.Lock()


def shared_training(settings: Settings) -> Training:
    """The process-wide :class:`Training` of ``settings``' run store, which every browser session uses. The
    first call (at server start) resumes a queue left by the last server."""
    key = Path(settings.runs_dir).resolve()
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Training(settings)
            _shared[key].wake()
        return _shared[key]
