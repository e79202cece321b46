"""The progress-callback convention shared by long operations in ``core``.

A progress callback is called as ``on_progress(done, total, message)``: ``done`` units out of ``total``
(``None`` when the total is unknown, e.g. a download without Content-Length), and a short human message
such as ``"downloading flower_photos.tgz"``. Callers (tqdm in the CLI, ``st.progress`` in the app) decide
how to show it; ``core`` never prints.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from tqdm import tqdm

ProgressFn = Callable[[int, Optional[int], str], None]


def no_progress(done: int, total: Optional[int], message: str) -> None:
    """The default callback: ignore progress."""


def time_left(elapsed: float, done: int, total: Optional[int], initial: int = 0) -> str:
    """The time left at the pace so far, written as tqdm writes it ("00:10", "1:06:40"): ``done - initial``
    units took ``elapsed`` seconds, ``total - done`` remain. ``""`` while there is no pace yet or no total."""
    if not total or done <= initial or elapsed <= 0:
        return ""
    return tqdm.format_meter(done, total, elapsed, initial=initial, bar_format="{remaining}")


class Pace:
    """The time left for progress reports seen one after another (e.g. a page polling a background task): the
    pace is measured from the first report of the current message, so work that was already under way when
    the watching began, a new phase (a new message) or counts that start again each measure afresh."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._start: Optional[tuple] = None  # (time, done, message) of the first report of this phase
        self._last = 0  # the latest report's count

    def time_left(self, done: int, total: Optional[int], message: str) -> str:
        """:func:`time_left` at the pace since this phase was first reported."""
        now = self._clock()
        if self._start is None or self._start[2] != message or done < self._last:
            self._start = (now, done, message)
        self._last = done
        started, initial, _ = self._start
        return time_left(now - started, done, total, initial)
