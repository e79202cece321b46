"""Where a search index's vectors live: its vector store.

* ``faiss`` (the default): one file per dataset, method and embedder under ``<cache>/indexes``, every method's
  metric (L1, inner product); see :mod:`core.retrieval.index`.
* ``milvus``: one collection per dataset folder, method and embedder, in a Milvus Lite file (Milvus embedded in
  this process: no server, offline) or on a Milvus server or cluster; inner product only, so cosine and deep,
  not l1 (see :mod:`core.retrieval.milvus`).

The choice comes from ``--store`` / ``--milvus-uri`` / ``--milvus-token`` (the CLI), the
Search page's settings, or else the environment (``TRANSFERLAB_STORE``, ``TRANSFERLAB_MILVUS_URI``,
``TRANSFERLAB_MILVUS_TOKEN``); :meth:`StoreConfig.from_settings` merges them. A Milvus URI is a file path ending
in ``.db`` (Milvus Lite) or ``http(s)://host:port`` (a server or cluster); without one, a Milvus Lite file in the
cache (:data:`LITE_FILE`).

An open index searches through its store: :class:`VectorStore` is all :class:`core.retrieval.index.ImageIndex`
asks of one. No store ever changes a method's metric: what it cannot do, it refuses with a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Protocol, Tuple

import faiss
import numpy as np

from core.errors import ConfigError
from core.retrieval import milvus
from core.retrieval.embedders import EmbedderConfig, get_embedder
from core.retrieval.methods import get_method
from core.settings import ENV_MILVUS_URI, ENV_STORE, STORE_KINDS, Settings, redact_uri

LITE_FILE = Path("milvus") / "transferlab.db"  # the default Milvus Lite file, under the cache dir
SERVER_SCHEMES = ("http://", "https://", "tcp://")


class VectorStore(Protocol):
    """The vectors of one index, in position order (positions index :attr:`ImageIndex.files`)."""

    kind: str  # "faiss" or "milvus"
    label: str  # for people: "FAISS", "Milvus Lite", "Milvus"
    location: str  # where: a file, or a URI and a collection

    @property
    def ntotal(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Scores and positions ``(m, k)`` of the ``k`` nearest, closest first (-1 where fewer exist)."""

    def vectors(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """float32 ``(n, dim)``: the vectors at positions ``start:stop``."""


@dataclass
class FaissStore:
    """A FAISS index held in memory, saved as one file (see :mod:`core.retrieval.index`)."""

    index: faiss.Index
    path: Path
    kind = "faiss"
    label = "FAISS"

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def vectors(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        return faiss_vectors(self.index, start, stop)


def faiss_vectors(index: faiss.Index, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """float32 ``(n, dim)``: the vectors at positions ``start:stop`` of ``index``, read into a numpy array handed to
    faiss. Without one, faiss allocates the result itself, and once anything in the process has imported
    ``faiss.contrib.torch_utils`` (pytorch-metric-learning's samplers do) that result is a torch tensor."""
    stop = index.ntotal if stop is None else min(stop, index.ntotal)
    n = max(0, stop - start)
    return index.reconstruct_n(start, n, np.empty((n, index.d), dtype=np.float32))


@dataclass(frozen=True)
class StoreConfig:
    """Which store holds the indexes: ``kind`` "faiss" or "milvus"; for Milvus, where (``uri``) and ``token``."""

    kind: str = "faiss"
    uri: str = ""  # Milvus: a Milvus Lite file (….db) or http(s)://host:port; "": the cache's Milvus Lite file
    token: str = field(default="", repr=False)  # Milvus server: "user:password" or an API key; never printed

    @classmethod
    def from_settings(
        cls, settings: Settings, kind: Optional[str] = None, uri: Optional[str] = None, token: Optional[str] = None
    ) -> StoreConfig:
        """The environment's store (``settings``), with each of ``kind``, ``uri``, ``token`` that is given (a CLI
        flag, a page setting) in its place; checked, and the URI made explicit (:meth:`resolved`)."""
        return cls(
            kind=settings.store if kind is None else kind,
            uri=settings.milvus_uri if uri is None else uri,
            token=settings.milvus_token if token is None else token,
        ).resolved(settings)

    @property
    def is_lite(self) -> bool:
        return self.kind == "milvus" and milvus.is_lite(self.uri)

    def resolved(self, settings: Settings) -> StoreConfig:
        """This config checked (a :class:`ConfigError` saying what is wrong), a Milvus Lite URI made an absolute
        path (the cache's file when none is given, its folder created)."""
        kind = self.kind.strip().lower()
        if kind not in STORE_KINDS:
            raise ConfigError(
                f"Unknown vector store '{self.kind}' (--store, {ENV_STORE}): choose {' or '.join(STORE_KINDS)}."
            )
        uri = self.uri.strip()
        if kind == "faiss":
            return replace(self, kind=kind, uri=uri)
        if uri.startswith(SERVER_SCHEMES):
            return replace(self, kind=kind, uri=uri)
        if "://" in uri:
            raise ConfigError(
                f"Milvus URI '{uri}' (--milvus-uri, {ENV_MILVUS_URI}): a server is http://host:19530 (or https://), "
                "a Milvus Lite file is a path ending in .db."
            )
        if not uri:
            path = settings.cache_dir / LITE_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            path = Path(uri).expanduser().resolve()
            if path.suffix != ".db":
                raise ConfigError(
                    f"Milvus URI '{uri}' (--milvus-uri, {ENV_MILVUS_URI}): a Milvus Lite file is a path ending in "
                    ".db, such as ~/transferlab.db; a server is http://host:19530."
                )
            if not path.parent.is_dir():
                raise ConfigError(f"The folder of the Milvus Lite file {path} does not exist: create it first.")
        return replace(self, kind=kind, uri=str(path))

    def describe(self) -> str:
        """For people: which store, and where."""
        if self.kind == "faiss":
            return "FAISS files in the cache"
        return f"Milvus Lite file {self.uri}" if self.is_lite else f"Milvus server {redact_uri(self.uri)}"


def check_store(store: StoreConfig, settings: Settings) -> str:
    """What ``store`` is, once reached: for Milvus this connects (starting Milvus Lite on its file) and says which
    version answered; a one-line :class:`core.errors.DataError` when it cannot be reached. For a settings page."""
    store = store.resolved(settings)
    if store.kind == "faiss":
        return f"FAISS files under {settings.cache_dir / 'indexes'}"
    return f"{store.describe()}: {milvus.server_version(store.uri, store.token)}"


def refusal(store: StoreConfig, method: str, embedder_cfg: Optional[EmbedderConfig] = None) -> Optional[str]:
    """Why ``store`` cannot hold ``method``'s vectors (with ``embedder_cfg``), or None when it can: Milvus has no
    L1 metric, and takes at most 32,768 numbers a vector (raw pixels at 86×128 are 33,024). Costs nothing: deep
    features are not counted (a few thousand numbers at most; counting would load the network). For a page to
    say so beside the method, and for the CLI to leave such a method out of its default "every method"."""
    if store.kind != "milvus":
        return None
    spec = get_method(method)
    dim = get_embedder(spec.embedder, embedder_cfg).dim if spec.embedder == "pixels" else None
    try:
        milvus.check_method(spec, dim)
    except milvus.StoreUnsupported as e:
        return str(e)
    return None
