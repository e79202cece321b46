"""Where Transfer Lab keeps things, and what it shares: environment variables with per-user defaults.

| variable                        | meaning                                         | default                         |
|---------------------------------|-------------------------------------------------|---------------------------------|
| ``TRANSFERLAB_CACHE_DIR``       | downloads, decoded image tensors, indexes       | the user's cache dir            |
| ``TRANSFERLAB_RUNS_DIR``        | the run store                                   | the user's data dir ``/runs``   |
| ``TRANSFERLAB_RESNET18_WEIGHTS``| a local ImageNet ResNet18 weights file (.pth)   | unset (hub cache, then download)|
| ``TRANSFERLAB_DATA_ROOTS``      | folders the app may open by path (``:``-joined) | unset (see core.data.sources)   |
| ``TRANSFERLAB_UPLOAD_BUDGET``   | room for uploaded zips and their extractions    | ``5GB`` (see core.data.uploads) |
| ``TRANSFERLAB_TEACHER_PASSWORD``| unlocks teacher mode (Stop on every run)        | unset (secrets.toml, or local)  |
| ``TRANSFERLAB_STORE``           | the search index store: ``faiss`` or ``milvus`` | ``faiss`` (core.retrieval.stores)|
| ``TRANSFERLAB_MILVUS_URI``      | Milvus: a Milvus Lite ``.db`` file or server URL| a Milvus Lite file in the cache |
| ``TRANSFERLAB_MILVUS_TOKEN``    | Milvus server: ``user:password`` or an API key  | unset                           |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import platformdirs

from core.errors import ConfigError

APP_NAME = "transferlab"
ENV_CACHE_DIR = "TRANSFERLAB_CACHE_DIR"
ENV_RUNS_DIR = "TRANSFERLAB_RUNS_DIR"
ENV_RESNET18_WEIGHTS = "TRANSFERLAB_RESNET18_WEIGHTS"
ENV_DATA_ROOTS = "TRANSFERLAB_DATA_ROOTS"
ENV_UPLOAD_BUDGET = "TRANSFERLAB_UPLOAD_BUDGET"
ENV_TEACHER_PASSWORD = "TRANSFERLAB_TEACHER_PASSWORD"
ENV_STORE = "TRANSFERLAB_STORE"
ENV_MILVUS_URI = "TRANSFERLAB_MILVUS_URI"
ENV_MILVUS_TOKEN = "TRANSFERLAB_MILVUS_TOKEN"
STORE_KINDS = ("faiss", "milvus")  # the values of TRANSFERLAB_STORE (see core.retrieval.stores)
# Room for one of the largest uploads (a 200 MB zip, see .streamlit/config.toml, unpacking to at most
# core.data.download.MAX_ZIP_BYTES = 4 GiB) and then some; what is over it is evicted, least recently used first.
DEFAULT_UPLOAD_BUDGET = "5GB"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity (what a container, a cpuset or ``taskset`` leaves it),
    not the machine's count, so that threads and decoders never outnumber the cores they get."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def parse_bytes(text: str, name: str = ENV_UPLOAD_BUDGET) -> int:
    """A size such as ``"5GB"``, ``"500 MB"``, ``"2GiB"`` or ``"1000000"`` (bytes) as a number of bytes (at least
    one); a :class:`ConfigError` naming the variable ``name`` otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if unit is None or float(m.group(1)) * unit < 1:
        raise ConfigError(
            f"{name}={text!r} is not a size: write a positive number of bytes, or one with a unit, such as "
            f"'5GB', '500MB' or '2GiB' (units: {', '.join(u.upper() for u in _UNITS if u)})."
        )
    return int(float(m.group(1)) * unit)


def redact_uri(uri: str) -> str:
    """``uri`` without the credentials it may carry (``https://user:password@host:19530``), for showing it."""
    m = re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*@", uri)
    return f"{uri[: uri.index('://') + 3]}…@{uri[m.end() :]}" if m else uri


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    runs_dir: Path
    resnet18_weights: Optional[Path] = None
    data_roots: Optional[Tuple[Path, ...]] = None  # folders the app may open by path; None: not set
    upload_budget: int = parse_bytes(DEFAULT_UPLOAD_BUDGET)  # bytes of uploaded zips and their extractions
    teacher_password: Optional[str] = field(default=None, repr=False)  # never printed
    store: str = "faiss"  # the vector store of search indexes; checked by core.retrieval.stores
    milvus_uri: str = ""  # "": a Milvus Lite file in the cache
    milvus_token: str = field(default="", repr=False)  # never printed

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
            upload_budget=parse_bytes(env.get(ENV_UPLOAD_BUDGET) or DEFAULT_UPLOAD_BUDGET),
            teacher_password=env.get(ENV_TEACHER_PASSWORD) or None,
            store=(env.get(ENV_STORE) or "faiss").strip().lower(),
            milvus_uri=(env.get(ENV_MILVUS_URI) or "").strip(),
            milvus_token=env.get(ENV_MILVUS_TOKEN) or "",
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
            ENV_UPLOAD_BUDGET: f"{self.upload_budget / 1e9:g} GB",
            ENV_TEACHER_PASSWORD: "(set)" if self.teacher_password else "(unset)",
            ENV_STORE: self.store,
            ENV_MILVUS_URI: redact_uri(self.milvus_uri) or "(unset)",
            ENV_MILVUS_TOKEN: "(set)" if self.milvus_token else "(unset)",
        }
