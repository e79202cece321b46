"""Shared fixtures: isolated settings (no test touches the user's cache or runs) and tiny datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from core.settings import ENV_CACHE_DIR, ENV_DATA_ROOTS, ENV_RESNET18_WEIGHTS, ENV_RUNS_DIR, Settings  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def shared_test_folders(tmp_path_factory, monkeypatch):
    """The app may open the tests' own temporary folders by path (TRANSFERLAB_DATA_ROOTS), and nothing else."""
    monkeypatch.setenv(ENV_DATA_ROOTS, str(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache for the whole session, so the sample and decoded tensors are made once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def settings(session_cache, tmp_path, monkeypatch) -> Settings:
    """Settings pointing at a session cache and a per-test runs dir; environment set to match, so code that
    reads ``Settings.from_env()`` (the CLI, subprocesses) sees the same."""
    runs = tmp_path / "runs"
    monkeypatch.setenv(ENV_CACHE_DIR, str(session_cache))
    monkeypatch.setenv(ENV_RUNS_DIR, str(runs))
    monkeypatch.delenv(ENV_RESNET18_WEIGHTS, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(session_cache / "torch"))  # not this machine's hub cache of weights
    return Settings(cache_dir=session_cache, runs_dir=runs)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """5 classes x 16 generated images of 48 px, ImageFolder layout."""
    from core.data.sample import generate_sample

    return generate_sample(tmp_path_factory.mktemp("tiny") / "data", per_class=16, size=48, seed=3)


@pytest.fixture(scope="session")
def sample_folder(session_cache) -> Path:
    """The app's built-in sample (the default one the app trains on offline)."""
    from core.data.sample import ensure_sample

    return ensure_sample(session_cache)


@pytest.fixture
def milvus_lite(tmp_path, settings):
    """The Milvus store in a new Milvus Lite file (Milvus embedded in this process, no server); skips when Milvus
    Lite cannot start here. Its server is stopped afterwards, which frees the file."""
    from core.errors import DataError
    from core.retrieval import milvus
    from core.retrieval.stores import StoreConfig, check_store

    store = StoreConfig("milvus", str(tmp_path / "milvus.db")).resolved(settings)
    try:
        check_store(store, settings)
    except (ImportError, DataError) as e:
        milvus.close_clients()
        pytest.skip(f"Milvus Lite cannot start here: {e}")
    yield store
    milvus.close_clients()
