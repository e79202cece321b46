"""One training queue per process, shared by every browser session of the app.

A classroom of students pressing "Train" at once must not oversubscribe a 2-core CPU: jobs run one at a
time on a single worker thread, in submission order; queued jobs know their position. The worker never
touches the UI: it calls :func:`core.training.train.train_run`, which writes everything to the run store, and keeps
a small in-memory view (state, last progress, run id) for the pages to poll.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional

from core.errors import TransferLabError
from core.settings import Settings
from core.training.config import RunConfig
from core.training.events import BatchEnd, PhaseProgress, RunEnd, RunStarted
from core.training.train import progress_dict, train_run

ACTIVE = ("queued", "running")  # the other states: finished, interrupted, failed, cancelled


@dataclass
class Job:
    id: str
    config: RunConfig
    settings: Settings
    label: str = ""
    state: str = "queued"
    submitted_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    run_id: Optional[str] = None
    run_dir: Optional[str] = None
    progress: Dict = field(default_factory=dict)
    summary: Dict = field(default_factory=dict)
    error: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


Runner = Callable[..., Dict]


class JobQueue:
    """Run :class:`~core.training.config.RunConfig` jobs one at a time on a background thread."""

    def __init__(self, runner: Optional[Runner] = None):
        self._runner = runner or train_run
        self._jobs: Dict[str, Job] = {}
        self._order: List[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._thread: Optional[threading.Thread] = None

    # --------------------------------------------------------------------------------------------- public

    def submit(self, config: RunConfig, settings: Optional[Settings] = None, label: str = "") -> Job:
        """Queue a run; returns a snapshot of its job. Validates the config first (raises ConfigError)."""
        config.validate()
        with self._lock:
            job = Job(
                id=f"job-{next(self._ids)}",
                config=config,
                settings=settings or Settings.from_env(),
                label=label or f"{config.model.regime} · {config.model.backbone}",
            )
            self._jobs[job.id] = job
            self._order.append(job.id)
            self._ensure_worker()
            self._wake.notify_all()
            return replace(job)

    def stop(self, job_id: str) -> bool:
        """Stop a running job after its current batch, or cancel a queued one. False if already over."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.active:
                return False
            job.stop_event.set()
            if job.state == "queued":
                job.state, job.ended_at = "cancelled", time.time()
                self._wake.notify_all()
            return True

    def jobs(self) -> List[Job]:
        """Snapshots of every job, in submission order."""
        with self._lock:
            return [replace(self._jobs[i]) for i in self._order]

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            job = self._jobs.get(job_id)
            return replace(job) if job else None

    def position(self, job_id: str) -> Optional[int]:
        """0 while running, k >= 1 for the k-th queued job, None when over or unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.active:
                return None
            if job.state == "running":
                return 0
            queued = [i for i in self._order if self._jobs[i].state == "queued"]
            return queued.index(job_id) + 1

    def busy(self) -> bool:
        with self._lock:
            return self._busy()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is queued or running (for tests and scripts). True if it became idle."""
        with self._wake:  # notified whenever a job ends (finished, failed, interrupted or cancelled)
            return self._wake.wait_for(lambda: not self._busy(), timeout)

    # ------------------------------------------------------------------------------------------- worker

    def _busy(self) -> bool:  # with the lock held
        return any(j.active for j in self._jobs.values())

    def _ensure_worker(self) -> None:
        # A daemon thread rather than a ThreadPoolExecutor(max_workers=1): the executor's workers are joined at
        # interpreter exit after running everything still queued, so one Ctrl-C would wait for the whole race.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="transferlab-train-queue", daemon=True)
            self._thread.start()

    def _next(self) -> Optional[Job]:
        for i in self._order:
            if self._jobs[i].state == "queued":
                return self._jobs[i]
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                job = self._next()
                while job is None:
                    if not self._wake.wait(timeout=30):
                        if self._next() is None:  # idle: let the thread end; submit() starts a new one
                            self._thread = None
                            return
                    job = self._next()
                job.state, job.started_at = "running", time.time()
            self._run(job)

    def _run(self, job: Job) -> None:
        def on_event(event) -> None:
            with self._lock:
                if isinstance(event, RunStarted):
                    job.run_id, job.run_dir = event.run_id, event.run_dir
                elif isinstance(event, (BatchEnd, PhaseProgress)):
                    job.progress = progress_dict(event)
                elif isinstance(event, RunEnd):
                    job.summary = dict(event.summary)

        try:
            summary = self._runner(job.config, job.settings, on_event=on_event, should_stop=job.stop_event.is_set)
            state, error = summary.get("status", "finished"), ""
        except TransferLabError as e:
            summary, state, error = {}, "failed", str(e)
        except Exception as e:  # a bug: keep the queue alive, show what happened
            summary, state, error = {}, "failed", f"{type(e).__name__}: {e}"
        with self._lock:
            job.summary = summary or job.summary
            job.state, job.error, job.ended_at = state, error, time.time()
            self._wake.notify_all()  # wakes wait_idle()


_shared: Optional[JobQueue] = None
_shared_lock = threading.Lock()


def shared_queue() -> JobQueue:
    """The process-wide queue every app session submits to."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = JobQueue()
        return _shared
