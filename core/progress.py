"""The progress-callback convention shared by long operations in ``core``.

A progress callback is called as ``on_progress(done, total, message)``: ``done`` units out of ``total``
(``None`` when the total is unknown, e.g. a download without Content-Length), and a short human message
such as ``"downloading flower_photos.tgz"``. Callers (tqdm in the CLI, ``st.progress`` in the app) decide
how to show it; ``core`` never prints.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Callable[[int, Optional[int], str], None]


def no_progress(done: int, total: Optional[int], message: str) -> None:
    """The default callback: ignore progress."""
