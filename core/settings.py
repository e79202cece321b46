"""Where Transfer Lab keeps things, and what it shares: environment variables with per-user defaults.

| variable                        | meaning                                         | default                         |
|---------------------------------|-------------------------------------------------|---------------------------------|
| ``TRANSFERLAB_CACHE_DIR``       | downloads, decoded image tensors, indexes       | the user's cache dir            |
| ``TRANSFERLAB_RUNS_DIR``        | the run store                                   | the user's data dir ``/runs``   |
| ``TRANSFERLAB_RESNET18_WEIGHTS``| a local ImageNet ResNet18 weights file (.pth)   | unset (hub cache, then download)|
| ``TRANSFERLAB_DATA_ROOTS``      | folders the app may open by path (``:``-joined) | unset (see core.data.sources)   |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import platformdirs

APP_NAME = "transferlab"
ENV_CACHE_DIR = "TRANSFERLAB_CACHE_DIR"
ENV_RUNS_DIR = "TRANSFERLAB_RUNS_DIR"
ENV_RESNET18_WEIGHTS = "TRANSFERLAB_RESNET18_WEIGHTS"
ENV_DATA_ROOTS = "TRANSFERLAB_DATA_ROOTS"


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    runs_dir: Path
    resnet18_weights: Optional[Path] = None
    data_roots: Optional[Tuple[Path, ...]] = None  # folders the app may open by path; None: not set

    @classmethod
    def from_env(cls, environ: Optional[dict] = None) -> Settings:
        env = os.environ if environ is None else environ
        cache = env.get(ENV_CACHE_DIR) or platformdirs.user_cache_dir(APP_NAME)
        runs = env.get(ENV_RUNS_DIR) or str(Path(platformdirs.user_data_dir(APP_NAME)) / "runs")
        weights = env.get(ENV_RESNET18_WEIGHTS) or None
        roots = env.get(ENV_DATA_ROOTS)
        return cls(
            cache_dir=Path(cache).expanduser(),
            runs_dir=Path(runs).expanduser(),
            resnet18_weights=Path(weights).expanduser() if weights else None,
            data_roots=None if roots is None else tuple(Path(r).expanduser() for r in roots.split(os.pathsep) if r),
        )

    def written_folders(self) -> list:
        """The folders whose files are written atomically (each run's folder is one level below the runs dir):
        where a process killed mid-write can leave a temporary file behind."""
        cache = self.cache_dir
        return [self.runs_dir, cache / "tensors", cache / "indexes", cache / "runtime", cache / "throughput"]

    def describe(self) -> dict:
        """The settings as shown to users (app sidebar, ``python -m core settings``)."""
        return {
            ENV_CACHE_DIR: str(self.cache_dir),
            ENV_RUNS_DIR: str(self.runs_dir),
            ENV_RESNET18_WEIGHTS: str(self.resnet18_weights) if self.resnet18_weights else "(unset)",
            ENV_DATA_ROOTS: os.pathsep.join(map(str, self.data_roots)) if self.data_roots is not None else "(unset)",
        }
