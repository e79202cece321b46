"""One cached reader of the run store for the whole server, so a refresh costs what changed, not the store.

Every open Train tab refreshes its live panel about once a second, and Compare lists the store on every
click. Reading every run folder each time costs seconds with a hundred runs and 15 tabs, and steals the CPU
of the training beside it. Here a listing is re-read at most once per ``max_age`` seconds for the whole
process (every session shares it), and within it only the runs whose files changed are loaded again. A
run's key is the tuple of its folder's mtime (the run files are replaced by rename, which touches it) and
``metrics.jsonl``'s mtime and size (appended in place); a running run is also re-checked for being alive.
A key younger than ``SETTLE_SECONDS`` is not trusted yet: a second write within the file system's timestamp
resolution would not change it (the "racy git" problem).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from core.runs.store import RunRecord, is_training, load_run

Key = Tuple[int, Optional[Tuple[int, int]]]
MAX_AGE_SECONDS = 0.5  # a listing this fresh is served as it is: under the pages' 1-second refresh
SETTLE_SECONDS = 2.0  # coarser than any file system's mtime resolution (FAT: 2 s; ext4, tmpfs: a few ms)


def run_key(run_dir: Path) -> Key:
    """What changes whenever a run's files change (raises OSError when the folder is gone)."""
    folder = os.stat(run_dir)
    try:
        metrics = os.stat(run_dir / "metrics.jsonl")
        return folder.st_mtime_ns, (metrics.st_mtime_ns, metrics.st_size)
    except FileNotFoundError:
        return folder.st_mtime_ns, None


class Listing:
    """The runs of ``runs_dir``, newest first, re-read at most every ``max_age`` seconds and only where changed."""

    def __init__(self, runs_dir: Path, max_age: float = MAX_AGE_SECONDS):
        self.dir, self.max_age = Path(runs_dir), max_age
        self._lock = threading.Lock()
        self._records: Dict[str, Tuple[Key, RunRecord]] = {}  # run id -> (its key when read, the record)
        self._runs: List[RunRecord] = []
        self._at = -float("inf")
        self.loads = 0  # run folders read so far: what the cache saves, for tests and benchmarks
        self.refreshes = 0  # passes over the store so far

    def runs(self, max_age: Optional[float] = None) -> List[RunRecord]:
        """The runs, newest first, as read at most ``max_age`` seconds ago (default: the listing's own; 0 for a
        listing as fresh as can be, which still re-reads only the runs that changed)."""
        with self._lock:
            if time.monotonic() - self._at >= (self.max_age if max_age is None else max_age):
                self._runs = self._refresh()
                self._at = time.monotonic()
            return self._runs

    def expire(self) -> None:
        """The next read re-reads the store: after a write through this process (a launch, a Stop), so that the
        page drawn next shows it."""
        with self._lock:
            self._at = -float("inf")

    def _refresh(self) -> List[RunRecord]:
        self.refreshes += 1
        try:
            folders = [d for d in os.scandir(self.dir) if d.is_dir() and not d.name.startswith(".")]
        except FileNotFoundError:
            folders = []
        records: Dict[str, Tuple[Key, RunRecord]] = {}
        for entry in folders:
            path = Path(entry.path)
            try:
                key = run_key(path)
            except OSError:  # removed meanwhile
                continue
            cached = self._records.get(entry.name)
            if cached is not None and cached[0] == key and _settled(key) and self._still_true(cached[1]):
                records[entry.name] = cached
            else:
                records[entry.name] = (key, load_run(path))
                self.loads += 1
        self._records = records
        return sorted((rec for _, rec in records.values()), key=lambda r: r.run_id, reverse=True)

    @staticmethod
    def _still_true(rec: RunRecord) -> bool:
        """A run read as running turns interrupted when its process dies, with no file changing."""
        return rec.status != "running" or is_training(rec.dir, rec.process)


def _settled(key: Key) -> bool:
    newest = max(key[0], key[1][0] if key[1] else 0)
    return time.time_ns() - newest > SETTLE_SECONDS * 1e9


_shared: Dict[Path, Listing] = {}
_shared_lock = threading.Lock()


def shared_listing(runs_dir: Path) -> Listing:
    """The process-wide listing of ``runs_dir`` that every browser session reads."""
    key = Path(runs_dir).resolve()
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Listing(key)
        return _shared[key]
