"""The Milvus vector store: a search index as a Milvus collection, on a Milvus server or in a Milvus Lite file
(Milvus embedded in this process: no server, offline). Chosen in :mod:`core.retrieval.stores`.

One collection per dataset folder, method and embedder (:func:`collection_name`), one row per image file:

| field      | type                  | holds                                                             |
|------------|-----------------------|-------------------------------------------------------------------|
| ``id``     | INT64, primary key    | a hash of ``path`` (:func:`row_id`)                               |
| ``vector`` | FLOAT_VECTOR(dim)     | the method's vector, as the FAISS store holds it                  |
| ``path``   | VARCHAR               | the file, relative to the dataset folder                          |
| ``label``  | VARCHAR               | its class (the sub-folder)                                        |
| ``size``, ``mtime_ns`` | INT64     | the file's size and modification time when it was embedded        |
| ``readable`` | BOOL                | False: not an image (a zero vector, never returned), tried once   |

:func:`sync` follows the FAISS cache's rules: a file whose (path, size, mtime) is in the collection is kept, a
new or changed one is embedded and upserted, a removed one is deleted. The index is FLAT (exact search) and its
metric is FAISS's: inner product (``IP``) on L2-normalised vectors for cosine and deep. Milvus has no L1 for
float vectors, so the l1 method is refused (:class:`StoreUnsupported`) rather than searched by another metric.

Every Milvus failure becomes a one-line :class:`DataError` (:func:`errors`); an unreachable server is named
and the FAISS store offered. pymilvus's own logging, which prints tracebacks, is silenced.

An index kept open in memory is reused without asking Milvus while the dataset's files are unchanged, as with
FAISS. Rows another process adds to the collection meanwhile are left out of search results; rows it deletes
are an error when vectors are read back. The next :func:`sync` puts the collection right.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import faiss
import numpy as np

from core.errors import ConfigError, DataError
from core.progress import ProgressFn
from core.retrieval.methods import MethodSpec
from core.settings import ENV_MILVUS_URI, ENV_STORE, redact_uri

CONNECT_TIMEOUT = 5.0  # seconds to reach a server before calling it unreachable
CALL_TIMEOUT = 120.0  # seconds per request, pymilvus's retries included
MAX_DIM = 32_768  # Milvus's limit on vector dimensions (proxy.maxDimension; Milvus Lite does not check it)
MAX_ROWS = 16_384  # Milvus's limit on topk, on queries per search and on rows per query
RPC_BYTES = 16 << 20  # vector bytes per request: well under Milvus's 64 MB a request
METRICS = {faiss.METRIC_INNER_PRODUCT: "IP", faiss.METRIC_L2: "L2"}  # a FAISS metric -> the same Milvus one
FIELDS = ("id", "path", "label", "size", "mtime_ns", "readable")  # besides "vector"
# pymilvus configures its own; grpc._server logs a traceback for each call Milvus Lite does not implement
_LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite", "grpc._server")
OFFER_FAISS = f"or use the FAISS store: --store faiss ({ENV_STORE}=faiss)"

Entry = Tuple[str, int, int]  # (path relative to the dataset, size, mtime_ns), as core.data.tensor_cache.file_stats


class StoreUnsupported(ConfigError):
    """This store cannot hold this method's vectors (no such metric, too many dimensions)."""


def check_method(spec: MethodSpec, dim: Optional[int] = None) -> str:
    """The Milvus metric of ``spec`` (and vectors of ``dim`` numbers); :class:`StoreUnsupported` saying why not."""
    if spec.metric not in METRICS:
        name = "L1" if spec.metric == faiss.METRIC_L1 else f"FAISS metric {spec.metric}"
        raise StoreUnsupported(
            f"Milvus has no {name} metric for float vectors (it offers L2, IP and COSINE): search by "
            f"{spec.display} with the FAISS store (--store faiss, or {ENV_STORE}=faiss), or use cosine or deep."
        )
    if dim is not None and dim > MAX_DIM:
        raise StoreUnsupported(
            f"Milvus takes vectors of at most {MAX_DIM:,} numbers; {spec.display} vectors here have {dim:,}: choose "
            f"a smaller pixel size (--pixel-size, e.g. 80x128), {OFFER_FAISS}."
        )
    return METRICS[spec.metric]


def collection_name(method: str, folder_hash: str, embedder_hash: str) -> str:
    """Letters, digits and underscores, as Milvus wants: one collection per dataset folder, method, embedder."""
    return f"transferlab_{method}_{folder_hash}_{embedder_hash}"


def row_id(path: str) -> int:
    """A file's primary key: 63 bits of the SHA-1 of its relative path (the same file, the same row)."""
    return int.from_bytes(hashlib.sha1(path.encode()).digest()[:8], "big") >> 1


def is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


# ------------------------------------------------------------------------------------------ connection


_clients: Dict[Tuple[str, str], object] = {}  # (uri, token) -> MilvusClient, one per server or Lite file
_clients_lock = threading.RLock()


def client(uri: str, token: str = ""):
    """This process's one ``MilvusClient`` of ``uri`` (connected on first use, within :data:`CONNECT_TIMEOUT`);
    a Milvus Lite ``uri`` starts Milvus Lite on that file. Created under a lock: threads share it."""
    with _clients_lock:
        found = _clients.get((uri, token))
        if found is None:
            from pymilvus import MilvusClient  # noqa: PLC0415 (lazy: 0.4 s to import, and FAISS users never need it)

            _quiet_logs()
            with errors(uri):
                found = MilvusClient(uri=uri, token=token, timeout=CONNECT_TIMEOUT)
            _clients[(uri, token)] = found
        return found


def server_version(uri: str, token: str = "") -> str:
    c = client(uri, token)
    with errors(uri):
        return str(c.get_server_version(timeout=CONNECT_TIMEOUT))


def close_clients() -> None:
    """Close every client, and stop this process's Milvus Lite servers (their files are then free)."""
    with _clients_lock:
        for uri in {uri for uri, _ in _clients}:
            _forget(uri)
            if is_lite(uri):
                from milvus_lite import server_manager_instance  # noqa: PLC0415 (lazy, as in client)

                server_manager_instance.release_server(uri)


def _forget(uri: str) -> None:
    """Close and drop the clients of ``uri``: the next use connects again."""
    with _clients_lock:
        for key in [k for k in _clients if k[0] == uri]:
            try:
                _clients.pop(key).close()
            except Exception:  # closing a broken connection: nothing left to do
                pass


def _quiet_logs() -> None:
    """pymilvus and Milvus Lite log failed requests with tracebacks; the user gets :func:`errors`' line instead."""
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


@contextmanager
def errors(uri: str):
    """Milvus failures inside as a one-line :class:`DataError` about ``uri``."""
    from pymilvus.exceptions import MilvusException  # noqa: PLC0415 (lazy, as in client)

    shown = redact_uri(uri)
    try:
        yield
    except MilvusException as e:
        text = " ".join(str(e.message or e).split()) or type(e).__name__
        if is_lite(uri):
            if "open local milvus failed" in text.lower() and _held_by_another_process(Path(uri)):
                raise DataError(
                    f"The Milvus Lite file {uri} is in use by another process (one process at a time: the app or "
                    f"another command): stop it, give another file with --milvus-uri ({ENV_MILVUS_URI}), "
                    f"{OFFER_FAISS}."
                ) from e
            raise DataError(f"Milvus Lite failed on {uri}: {text}.") from e
        if _unreachable(e, text):
            _forget(uri)
            raise DataError(
                f"Cannot reach the Milvus server at {shown} (tried for up to {CONNECT_TIMEOUT:g} s): start it, check "
                f"--milvus-uri ({ENV_MILVUS_URI}), {OFFER_FAISS}."
            ) from e
        raise DataError(f"The Milvus server at {shown} refused a request: {text}.") from e


def _unreachable(e: Exception, text: str) -> bool:
    from pymilvus.exceptions import MilvusUnavailableException  # noqa: PLC0415 (lazy, as in client)

    signs = ("fail connecting", "unavailable", "deadline", "retry timeout", "connection refused")
    return (
        isinstance(e, MilvusUnavailableException)
        or getattr(e, "code", None) == 2
        or any(s in text.lower() for s in signs)
    )


def _held_by_another_process(path: Path) -> bool:
    """Whether another process holds Milvus Lite's lock on ``path`` (its ``LOCK`` file, or the file itself)."""
    try:
        import fcntl  # noqa: PLC0415 (lazy: Unix only; elsewhere the generic message is given)
    except ImportError:
        return False
    for candidate in (path / "LOCK", path):
        if not candidate.is_file():
            continue
        with open(candidate, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    return False


# ------------------------------------------------------------------------------------------------ store


class MilvusStore:
    """A synced collection, searched on the server. Ids out are positions into ``ids`` (the index's files)."""

    kind = "milvus"

    def __init__(self, uri: str, token: str, name: str, metric: str, dim: int, ids: np.ndarray):
        self.uri, self.token, self.name, self.metric, self.dim = uri, token, name, metric, dim
        self.ids = np.asarray(ids, dtype=np.int64)  # primary key of each position
        self._order = np.argsort(self.ids)
        self._sorted = self.ids[self._order]
        self.location = f"{redact_uri(uri)}, collection {name}"
        self.label = "Milvus Lite" if is_lite(uri) else "Milvus"

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self._sorted, keys), max(len(self._sorted) - 1, 0))
        hit = len(self._sorted) > 0 and self._sorted[at] == keys
        return np.where(hit, self._order[at], -1)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Scores and positions ``(m, k)`` of the ``k`` nearest, closest first (-1 where fewer were found)."""
        if k > MAX_ROWS:
            raise DataError(f"Milvus returns at most {MAX_ROWS:,} neighbours a query, not {k:,}.")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), k), -np.finfo(np.float32).max, dtype=np.float32)  # as FAISS fills gaps
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        c = client(self.uri, self.token)
        for start in range(0, len(queries), _rows_per_request(self.dim)):
            batch = queries[start : start + _rows_per_request(self.dim)]
            with errors(self.uri):
                found = c.search(
                    self.name,
                    data=batch,
                    limit=k,
                    filter="readable == true",
                    output_fields=["id"],
                    anns_field="vector",
                    search_params={"metric_type": self.metric},
                    consistency_level="Strong",
                    timeout=CALL_TIMEOUT,
                )
            for row, hits in enumerate(found):
                pos = self._positions(np.array([h["id"] for h in hits], dtype=np.int64))
                keep = pos >= 0  # rows another process added since the sync are not this index's
                ids[start + row, : keep.sum()] = pos[keep]
                scores[start + row, : keep.sum()] = np.array([h["distance"] for h in hits], dtype=np.float32)[keep]
        return scores, ids

    def vectors(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """float32 ``(n, dim)``: the vectors of positions ``start:stop``, read back from the collection."""
        keys = self.ids[start:stop]
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        c = client(self.uri, self.token)
        step = _rows_per_request(self.dim)
        for at in range(0, len(keys), step):
            batch = keys[at : at + step].tolist()
            with errors(self.uri):
                rows = c.get(self.name, ids=batch, output_fields=["vector"], timeout=CALL_TIMEOUT)
            got = {r["id"]: r["vector"] for r in rows}
            if len(got) != len(batch):
                raise DataError(
                    f"The Milvus collection {self.name} ({redact_uri(self.uri)}) lost {len(batch) - len(got)} row(s) "
                    "since it was opened (changed by another process?): open the index again."
                )
            out[at : at + len(batch)] = [got[i] for i in batch]
        return out


def _rows_per_request(dim: int) -> int:
    return max(1, min(MAX_ROWS, RPC_BYTES // (4 * dim + 256)))


# ------------------------------------------------------------------------------------------------- sync


@dataclass
class Synced:
    store: MilvusStore
    entries: List[list]  # [path, size, mtime_ns] per position
    skipped: List[list]  # unreadable files
    embedded: int  # files embedded this time (readable or not)
    reused: int  # vectors kept from the collection
    action: str  # "reused", "added", "updated", "built"


def sync(
    uri: str,
    token: str,
    name: str,
    folder: str,
    metric: str,
    dim: int,
    entries: Sequence[Entry],
    embed: Callable[[List[Entry]], Tuple[np.ndarray, np.ndarray]],
    on_progress: ProgressFn,
) -> Synced:
    """Collection ``name`` brought in line with ``entries`` (the files of dataset ``folder``, in order), created
    when missing or unlike this one (fields, ``dim``, ``metric``). ``embed(todo)`` gives the vectors of new or
    changed files and which of them could be read. Positions follow ``entries``."""
    current = {row_id(e[0]): tuple(e) for e in entries}  # in entries' order
    if len(current) != len(entries):
        raise DataError(f"Two file paths share a row id in {folder}: rename one of them.")  # 1 in 2^63 per pair
    c = client(uri, token)
    with errors(uri):
        created = _ensure_collection(c, name, f"Transfer Lab search index of {folder}", metric, dim)
        stored = {} if created else _read_rows(c, name)
    unchanged = {k for k, e in current.items() if k in stored and stored[k][0] == e}
    todo = [k for k in current if k not in unchanged]  # new or changed files
    gone = [k for k in stored if k not in current]
    vectors, ok = embed([current[k] for k in todo]) if todo else (np.zeros((0, dim), np.float32), np.zeros(0, bool))
    readable = {k for k in unchanged if stored[k][1]} | {k for k, good in zip(todo, ok) if good}
    if not readable:
        raise DataError(f"None of the {len(entries)} image file(s) in {folder} could be read as an image.")
    with errors(uri):
        for at in range(0, len(gone), MAX_ROWS):
            c.delete(name, ids=gone[at : at + MAX_ROWS], timeout=CALL_TIMEOUT)
        step = _rows_per_request(dim)
        for at in range(0, len(todo), step):
            rows = [
                _row(k, current[k], vectors[i] if ok[i] else np.zeros(dim, np.float32), bool(ok[i]))
                for i, k in enumerate(todo[at : at + step], start=at)
            ]
            c.upsert(name, rows, timeout=CALL_TIMEOUT)
            on_progress(at + len(rows), len(todo), f"storing vectors in Milvus ({name})")
    if created:
        action = "built"
    elif not todo and not gone:
        action = "reused"
    else:
        action = "updated" if gone or any(k in stored for k in todo) else "added"
    kept = [k for k in current if k in readable]
    return Synced(
        store=MilvusStore(uri, token, name, metric, dim, np.array(kept, dtype=np.int64)),
        entries=[list(current[k]) for k in kept],
        skipped=[list(e) for k, e in current.items() if k not in readable],
        embedded=len(todo),
        reused=len(readable & unchanged),
        action=action,
    )


def _row(key: int, entry: Entry, vector: np.ndarray, readable: bool) -> dict:
    path, size, mtime_ns = entry
    return {
        "id": key,
        "vector": vector,
        "path": path,
        "label": path.split("/", 1)[0],
        "size": int(size),
        "mtime_ns": int(mtime_ns),
        "readable": readable,
    }


def _ensure_collection(c, name: str, about: str, metric: str, dim: int) -> bool:
    """Whether collection ``name`` had to be created (it was missing, or built otherwise: dropped first)."""
    if c.has_collection(name, timeout=CALL_TIMEOUT):
        if _same_layout(c, name, metric, dim):
            c.load_collection(name, timeout=CALL_TIMEOUT)
            return False
        c.drop_collection(name, timeout=CALL_TIMEOUT)
    from pymilvus import DataType, MilvusClient  # noqa: PLC0415 (lazy, as in client)

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=about)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("path", DataType.VARCHAR, max_length=4096)
    schema.add_field("label", DataType.VARCHAR, max_length=1024)
    schema.add_field("size", DataType.INT64)
    schema.add_field("mtime_ns", DataType.INT64)
    schema.add_field("readable", DataType.BOOL)
    index = c.prepare_index_params()
    index.add_index(field_name="vector", index_name="vector", index_type="FLAT", metric_type=metric)
    c.create_collection(name, schema=schema, index_params=index, consistency_level="Strong", timeout=CALL_TIMEOUT)
    return True


def _same_layout(c, name: str, metric: str, dim: int) -> bool:
    fields = {f["name"]: f for f in c.describe_collection(name, timeout=CALL_TIMEOUT)["fields"]}
    if set(fields) != {"vector", *FIELDS} or int(fields["vector"].get("params", {}).get("dim", -1)) != dim:
        return False
    index = c.describe_index(name, "vector", timeout=CALL_TIMEOUT) or {}
    return index.get("metric_type") == metric and index.get("index_type") == "FLAT"


def _read_rows(c, name: str) -> Dict[int, Tuple[Entry, bool]]:
    """Every row's ``(path, size, mtime_ns)`` and readability, by id (no vectors)."""
    fields = ["id", "path", "size", "mtime_ns", "readable"]
    rows = c.query(name, filter="", output_fields=fields, limit=MAX_ROWS, timeout=CALL_TIMEOUT)
    if len(rows) >= MAX_ROWS:  # more than one query returns: page through them
        rows, it = [], c.query_iterator(name, batch_size=MAX_ROWS // 4, filter="", output_fields=fields)
        try:
            while batch := it.next():
                rows.extend(batch)
        finally:
            it.close()
    return {r["id"]: ((r["path"], int(r["size"]), int(r["mtime_ns"])), bool(r["readable"])) for r in rows}
