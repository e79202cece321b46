"""Paths and markers shared by the tests."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FLOWERS = ROOT.parent / "shared" / "data" / "flower_photos"


def needs_shared_flowers():
    return pytest.mark.skipif(not SHARED_FLOWERS.is_dir(), reason=f"real flowers not present at {SHARED_FLOWERS}")
