"""Paths and markers shared by the tests."""

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
