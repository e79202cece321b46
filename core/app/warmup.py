"""The heavy libraries (torch, torchvision, timm, faiss, grad-cam), loaded in the background once per server process.

Importing them takes seconds on a laptop (torch alone about 3 s), so the router, the sidebar and Home import
nothing that needs them and paint at once. After the first page has painted, :func:`warm_up` starts a daemon
thread that imports them, so that Train and Search find them loaded. A page that needs one before the thread
is done simply imports it: Python's import lock makes it wait for the thread's import rather than do it twice.
(grad-cam loads matplotlib and OpenCV: imported here, it spares Look inside's first heat map about 1.4 s.)
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Optional

HEAVY_MODULES = ("torch", "torchvision", "timm", "faiss", "pytorch_grad_cam")

_lock = threading.Lock()
_thread: Optional[threading.Thread] = None


def _import_heavy() -> None:
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (a missing or broken library: the page that needs it says so)
            continue


def warm_up() -> threading.Thread:
    """Start importing :data:`HEAVY_MODULES` on a daemon thread, once per process; the thread (started or done)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_heavy, name="transferlab-warm-up", daemon=True)
            _thread.start()
        return _thread


def is_loaded(name: str) -> bool:
    """Whether the module ``name`` is imported (a page shows a spinner with words when it must wait for it)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)
