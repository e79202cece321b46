"""Long one-off work (building a search index, a leave-one-out search) on a background thread, by key.

A Streamlit page is a script that reruns on every click: work done inside it is thrown away when a rerun
stops it half-way. Started here instead, the work carries on; the page polls the :class:`Task` for its
progress, and a rerun (or another browser asking for the same thing) finds the running task by its key
instead of starting over. One worker thread, so two classrooms' worth of clicks never oversubscribe the CPU.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Callable, Dict, Optional

from core.progress import ProgressFn


class Task:
    """One piece of work: its future and its latest progress report."""

    def __init__(self, key: str):
        self.key = key
        self.done = 0
        self.total: Optional[int] = None
        self.message = "starting"
        self.future: Future = Future()

    def progress(self, done: int, total: Optional[int], message: str) -> None:
        self.done, self.total, self.message = done, total, message

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class TaskRunner:
    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transferlab-task")
        self._tasks: Dict[str, Task] = {}
        self._lock = threading.Lock()

    def start(self, key: str, work: Callable[[ProgressFn], Any]) -> Task:
        """The running task for ``key``, or a new one running ``work(progress)``. Finished tasks are
        forgotten (their callers hold them), so asking again later does the work again, e.g. after the
        dataset changed."""
        with self._lock:
            self._tasks = {k: t for k, t in self._tasks.items() if not t.future.done()}
            if key in self._tasks:
                return self._tasks[key]
            task = Task(key)
            task.future = self._pool.submit(work, task.progress)
            self._tasks[key] = task
            return task

    def wait(
        self, task: Task, poll: Callable[[Task], None] = lambda task: None, interval: float = 0.25, grace: float = 0.3
    ) -> Any:
        """``task``'s result (or its exception), calling ``poll(task)`` every ``interval`` seconds once it has
        taken longer than ``grace`` (quick work shows no progress at all). If ``poll`` raises (a page being
        rerun), the task carries on without its waiter."""
        wait_futures([task.future], timeout=grace)
        while not task.future.done():
            poll(task)
            wait_futures([task.future], timeout=interval)
        return task.future.result()

    def run(self, key: str, work: Callable[[ProgressFn], Any], poll: Callable[[Task], None] = lambda task: None):
        """:meth:`start` then :meth:`wait`."""
        return self.wait(self.start(key, work), poll)


_shared = TaskRunner()  # cheap: its worker thread starts with the first task


def shared_tasks() -> TaskRunner:
    """The process-wide runner every app session shares."""
    return _shared
