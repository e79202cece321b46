"""Paths, markers and page openers shared by the tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FLOWERS = ROOT.parent / "shared" / "data" / "flower_photos"


def needs_shared_flowers():
    return pytest.mark.skipif(not SHARED_FLOWERS.is_dir(), reason=f"real flowers not present at {SHARED_FLOWERS}")


def wait_until(predicate, timeout: float = 120.0) -> bool:
    """Poll ``predicate`` (a state of files another process writes, e.g. the training worker: nothing announces
    it) until it holds; False on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def open_app_page(page: str, state: dict | None = None, query: dict | None = None, timeout: int = 120):
    """The app (router and sidebar) in streamlit's AppTest, switched to ``page`` ("app_pages/compare.py"), with the
    session ``state`` and the URL parameters ``query`` set before its first run; it has raised no exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=timeout)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def noise_folder(root: Path, per_class: int = 6, seed: int = 0, classes=("a", "b", "c")) -> Path:
    """Random-noise PNGs (24x32) with a per-class colour bias: no two images tie on any distance."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 200, (24, 32, 3))
            arr[..., c % 3] += 55
            Image.fromarray(arr.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def shared_flowers_subset(root: Path, per_class: int) -> Path:
    """The first ``per_class`` photos of each class of ``../shared/data/flower_photos``, linked under ``root``."""
    import os

    for cls in sorted(p.name for p in SHARED_FLOWERS.iterdir() if p.is_dir()):
        (root / cls).mkdir(parents=True)
        for f in sorted((SHARED_FLOWERS / cls).glob("*.jpg"))[:per_class]:
            os.symlink(f, root / cls / f.name)
    return root
