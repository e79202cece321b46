"""Vector stores: Milvus (here Milvus Lite, embedded) finds what FAISS finds; what Milvus cannot do it refuses
with a message (no L1, at most 32,768 numbers a vector); an unreachable server or a Milvus Lite file held by
another process is one clear line (exit status 2 in the CLI), never a traceback or a silent fallback to FAISS.
The reuse and invalidation rules on both stores are in test_retrieval.py (parametrised by store)."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from core.cli import main
from core.errors import ConfigError, DataError
from core.retrieval import milvus
from core.retrieval.embedders import EmbedderConfig, PixelEmbedder
from core.retrieval.index import clear_memory_cache, open_index
from core.retrieval.metrics import evaluate_index
from core.retrieval.stores import FaissStore, StoreConfig, check_store, refusal
from core.settings import Settings
from tests.helpers import ROOT, noise_folder

SMALL = EmbedderConfig(pixel_height=12, pixel_width=16)


@pytest.fixture(autouse=True)
def fresh_memory():
    clear_memory_cache()
    yield
    clear_memory_cache()


def _agreement(a, b, tol=1e-5):
    """The share of queries whose top-k are the same in ``a`` and ``b`` (each ``(scores, ids)``), counting a query
    as agreeing when the ids differ only among tied scores (the two score lists match within ``tol``)."""
    (sa, ia), (sb, ib) = a, b
    same = [(x == y).all() or np.allclose(p, q, rtol=0, atol=tol) for x, y, p, q in zip(ia, ib, sa, sb)]
    return float(np.mean(same))


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------- choosing the store


def test_the_store_comes_from_the_environment_unless_given(tmp_path, monkeypatch):
    base = {"TRANSFERLAB_CACHE_DIR": str(tmp_path / "cache")}
    default = Settings.from_env(base)
    assert StoreConfig.from_settings(default) == StoreConfig("faiss")  # FAISS stays the default
    env = Settings.from_env(
        {**base, "TRANSFERLAB_STORE": "Milvus", "TRANSFERLAB_MILVUS_URI": "", "TRANSFERLAB_MILVUS_TOKEN": "u:secret"}
    )
    lite = StoreConfig.from_settings(env)
    assert lite.kind == "milvus" and lite.is_lite and lite.uri == str(tmp_path / "cache" / "milvus" / "transferlab.db")
    assert (tmp_path / "cache" / "milvus").is_dir() and lite.token == "u:secret" and "secret" not in repr(lite)
    assert env.describe()["TRANSFERLAB_MILVUS_TOKEN"] == "(set)" and "secret" not in repr(env)
    server = StoreConfig.from_settings(env, uri="http://milvus.example:19530")  # a flag over the environment
    assert not server.is_lite and server.describe() == "Milvus server http://milvus.example:19530"
    assert StoreConfig.from_settings(env, kind="faiss").kind == "faiss"
    with_password = StoreConfig.from_settings(env, uri="https://root:Milvus@db.example:19530")
    assert with_password.describe() == "Milvus server https://…@db.example:19530"
    shown = Settings.from_env({**base, "TRANSFERLAB_MILVUS_URI": "https://root:Milvus@db.example:19530"}).describe()
    assert shown["TRANSFERLAB_MILVUS_URI"] == "https://…@db.example:19530"
    monkeypatch.chdir(tmp_path)
    assert StoreConfig("milvus", "here.db").resolved(default).uri == str(tmp_path / "here.db")  # absolute
    for bad, words in (
        (StoreConfig("chroma"), "Unknown vector store 'chroma' (--store, TRANSFERLAB_STORE): choose faiss or milvus"),
        (StoreConfig("milvus", str(tmp_path / "vectors")), "a Milvus Lite file is a path ending in .db"),
        (StoreConfig("milvus", "grpc://host:19530"), "a server is http://host:19530"),
        (StoreConfig("milvus", str(tmp_path / "no" / "such.db")), "does not exist"),
    ):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            bad.resolved(default)


def test_l1_on_milvus_is_refused_before_any_work(tmp_path, settings, monkeypatch):
    noise = noise_folder(tmp_path / "noise", 2)
    calls = []
    monkeypatch.setattr(PixelEmbedder, "embed_files", lambda *a, **k: calls.append(a))
    store = StoreConfig("milvus", str(tmp_path / "m.db"))
    with pytest.raises(ConfigError) as e:
        open_index(noise, "l1", SMALL, settings=settings, store=store)
    assert str(e.value) == (
        "Milvus has no L1 metric for float vectors (it offers L2, IP and COSINE): search by L1 pixels with the "
        "FAISS store (--store faiss, or TRANSFERLAB_STORE=faiss), or use cosine or deep."
    )
    assert calls == [] and not (tmp_path / "m.db").exists()  # nothing embedded, Milvus not even started
    assert refusal(store, "l1") == str(e.value) and refusal(store, "cosine", SMALL) is None
    assert refusal(StoreConfig("faiss"), "l1") is None


def test_vectors_longer_than_milvus_takes_are_refused(tmp_path, settings):
    noise = noise_folder(tmp_path / "noise", 2)
    store = StoreConfig("milvus", str(tmp_path / "m.db"))
    with pytest.raises(ConfigError, match=r"at most 32,768 numbers; Cosine pixels vectors here have 33,024"):
        open_index(noise, "cosine", EmbedderConfig(), settings=settings, store=store)  # the notebook's 86x128
    assert "--pixel-size" in refusal(store, "cosine") and "--store faiss" in refusal(store, "cosine")
    assert refusal(store, "cosine", EmbedderConfig(pixel_height=85, pixel_width=128)) is None  # 32,640 fit
    assert not (tmp_path / "m.db").exists()


# ---------------------------------------------------------------------------------- Milvus agrees with FAISS


def test_milvus_lite_finds_what_faiss_finds_by_pixel_cosine(tmp_path, settings, milvus_lite):
    noise = noise_folder(tmp_path / "noise", 40)  # 120 images
    on_faiss, _ = open_index(noise, "cosine", SMALL, settings=settings)
    on_milvus, report = open_index(noise, "cosine", SMALL, settings=settings, store=milvus_lite)
    assert report.store == "milvus" and report.kind == "flat" and "exact search in Milvus" in report.describe()
    assert report.path.startswith(milvus_lite.uri) and "collection transferlab_cosine_" in report.path
    assert on_milvus.files == on_faiss.files and (on_milvus.labels == on_faiss.labels).all()
    V = on_faiss.vectors()
    np.testing.assert_array_equal(on_milvus.vectors(), V)  # float32 in, the same float32 out
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0, atol=1e-6)  # L2-normalised: IP is cosine
    got, want = on_milvus.search_vectors(V, 10), on_faiss.search_vectors(V, 10)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)  # the same scores: same metric, no other
    assert _agreement(got, want) >= 0.99
    q = noise / "b" / "7.png"
    assert [n.file for n in on_milvus.search(q, 5, exclude_file="b/7.png").neighbours] == [
        n.file for n in on_faiss.search(q, 5, exclude_file="b/7.png").neighbours
    ]
    # leave-one-out and its quality: the same on both stores
    np.testing.assert_array_equal(on_milvus.leave_one_out(5, batch=50), on_faiss.leave_one_out(5))
    qm, qf = evaluate_index(on_milvus, 5), evaluate_index(on_faiss, 5)
    assert (qm.precision_at_k, qm.map_at_k) == (qf.precision_at_k, qf.map_at_k)


def test_milvus_finds_what_faiss_finds_on_unit_vectors_with_ties(tmp_path, milvus_lite):
    """Deep-feature-like vectors (unit length, 64 numbers) through the store interface, with exact duplicates so
    that some top-10 lists hold ties."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 64)).astype(np.float32)
    X[2900:] = X[:100]  # 100 duplicated vectors: tied scores
    faiss.normalize_L2(X)
    entries = [(f"c{i % 7}/{i}.jpg", 1000 + i, 10**18 + i) for i in range(len(X))]
    row = {e: i for i, e in enumerate(entries)}

    unreadable = np.zeros(len(X), bool)
    unreadable[rng.choice(2900, 10, replace=False)] = True  # kept as rows with a zero vector, never returned

    def embed(todo):
        rows = [row[e] for e in todo]
        return X[rows], ~unreadable[rows]

    synced = milvus.sync(milvus_lite.uri, "", "synthetic", "/data", "IP", 64, entries, embed, lambda *a: None)
    readable = np.flatnonzero(~unreadable)
    assert synced.action == "built" and synced.embedded == 3000 and len(synced.skipped) == 10
    assert synced.entries == [list(entries[i]) for i in readable]  # positions: the readable entries, in order
    flat = faiss.IndexFlatIP(64)
    flat.add(X[readable])
    on_faiss = FaissStore(flat, tmp_path / "unused.npz")
    queries = np.concatenate([X[rng.choice(3000, 100, replace=False)], rng.normal(size=(200, 64)).astype(np.float32)])
    faiss.normalize_L2(queries)
    got, want = synced.store.search(queries, 10), on_faiss.search(queries, 10)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
    assert _agreement(got, want) >= 0.99
    # every neighbour, down to the farthest (negative similarities, below the unreadable rows' zero)
    got, want = synced.store.search(queries[:3], len(readable)), on_faiss.search(queries[:3], len(readable))
    assert (got[1] >= 0).all() and _agreement(got, want) == 1.0
    np.testing.assert_array_equal(synced.store.vectors(2980, 2990), X[readable[2980:2990]])
    again = milvus.sync(milvus_lite.uri, "", "synthetic", "/data", "IP", 64, entries, embed, lambda *a: None)
    assert again.action == "reused" and again.embedded == 0 and again.reused == 2990


def test_threads_share_one_client_and_one_build(tmp_path, settings, milvus_lite, monkeypatch):
    """The app opens and searches indexes from several threads at once."""
    noise = noise_folder(tmp_path / "noise", 4)
    calls = []
    real = PixelEmbedder.embed_files

    def counting(self, paths, *a):
        calls.append(paths)
        return real(self, paths, *a)

    def opening(_):
        return open_index(noise, "cosine", SMALL, settings=settings, store=milvus_lite)

    monkeypatch.setattr(PixelEmbedder, "embed_files", counting)
    milvus.close_clients()  # the next use connects: four threads at once
    with ThreadPoolExecutor(4) as pool:
        clients = list(pool.map(lambda _: milvus.client(milvus_lite.uri), range(4)))
        opened = list(pool.map(opening, range(4)))
        index = opened[0][0]
        hits = list(pool.map(lambda f: index.search(noise / f, 1).neighbours[0].file, index.files))
    assert all(c is clients[0] for c in clients)
    assert sorted(r.action for _, r in opened) == ["built", "reused", "reused", "reused"] and len(calls) == 1
    assert hits == index.files  # every image finds itself first


@pytest.mark.slow
def test_a_collection_larger_than_one_query_is_read_whole(milvus_lite):
    """Milvus answers at most 16,384 rows a query: a larger collection is paged through, every row counted."""
    n = milvus.MAX_ROWS + 500
    X = np.eye(4, dtype=np.float32)[np.arange(n) % 4]
    entries = [(f"c/{i}.png", 1, 1) for i in range(n)]
    row = {e: i for i, e in enumerate(entries)}

    def embed(todo):
        return X[[row[e] for e in todo]], np.ones(len(todo), bool)

    assert milvus.sync(milvus_lite.uri, "", "big", "/data", "IP", 4, entries, embed, print).action == "built"
    again = milvus.sync(milvus_lite.uri, "", "big", "/data", "IP", 4, entries[1:], embed, print)
    assert again.action == "updated" and again.reused == n - 1 and again.embedded == 0
    assert milvus.sync(milvus_lite.uri, "", "big", "/data", "IP", 4, entries[1:], embed, print).action == "reused"


def test_a_collection_with_another_metric_is_rebuilt_not_searched(tmp_path, settings, milvus_lite):
    """No silent change of metric: this dataset's collection found indexed by L2 (say, by another version) is
    dropped and built again by inner product, and searching it gives cosine similarities."""
    noise = noise_folder(tmp_path / "noise", 4)
    index, _ = open_index(noise, "cosine", SMALL, settings=settings, store=milvus_lite)
    name, entries, V = index.store.name, [tuple(e) for e in index.meta["entries"]], index.vectors()
    by_l2 = milvus.sync(
        milvus_lite.uri, "", name, str(noise), "L2", V.shape[1], entries, lambda todo: (V, np.ones(len(V), bool)), print
    )
    assert by_l2.action == "built"  # the IP collection was not searched by L2 either: rebuilt
    c = milvus.client(milvus_lite.uri)
    assert c.describe_index(name, "vector")["metric_type"] == "L2"
    clear_memory_cache()
    rebuilt, r = open_index(noise, "cosine", SMALL, settings=settings, store=milvus_lite)
    assert r.action == "built" and c.describe_index(name, "vector")["metric_type"] == "IP"
    hit = rebuilt.search(noise / "a" / "1.png", 1).neighbours[0]
    assert hit.file == "a/1.png" and abs(hit.score - 1.0) < 1e-5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deep_features_and_their_map_on_milvus(tmp_path, settings, milvus_lite):
    from core.explain.embedding_map import embedding_map

    noise = noise_folder(tmp_path / "noise", 6)
    on_faiss, _ = open_index(noise, "deep", settings=settings)
    on_milvus, r = open_index(noise, "deep", settings=settings, store=milvus_lite)
    assert r.action == "built" and r.store == "milvus" and on_milvus.files == on_faiss.files
    V = on_faiss.vectors()
    np.testing.assert_array_equal(on_milvus.vectors(), V)
    got, want = on_milvus.search_vectors(V, 10), on_faiss.search_vectors(V, 10)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
    assert _agreement(got, want) >= 0.99
    # Look inside's map reads the vectors of whichever store the settings choose
    with_milvus = dataclasses.replace(settings, cache_dir=tmp_path / "c2", store="milvus", milvus_uri=milvus_lite.uri)
    m = embedding_map(noise, EmbedderConfig(), with_milvus, method="pca")
    assert m.files == on_faiss.files and m.xy.shape == (18, 2)


# ------------------------------------------------------------------------------------ when Milvus fails


def test_an_unreachable_server_is_one_clear_line_offering_faiss(tmp_path, settings):
    noise = noise_folder(tmp_path / "noise", 2)
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    with pytest.raises(DataError) as e:
        open_index(noise, "cosine", SMALL, settings=settings, store=StoreConfig("milvus", uri))
    assert time.perf_counter() - started < milvus.CONNECT_TIMEOUT + 2
    msg = str(e.value)
    assert msg.startswith(f"Cannot reach the Milvus server at {uri}") and "\n" not in msg
    assert "--store faiss (TRANSFERLAB_STORE=faiss)" in msg and "--milvus-uri" in msg
    with pytest.raises(DataError, match="Cannot reach the Milvus server"):
        check_store(StoreConfig("milvus", uri), settings)


def test_the_cli_says_so_and_exits_2_without_a_traceback(tmp_path, settings, capfd, monkeypatch):
    noise = noise_folder(tmp_path / "noise", 2)
    uri = f"http://127.0.0.1:{_closed_port()}"
    query = noise / "a" / "0.png"
    small = ("--pixel-size", "12x16", "--quiet")
    flags = ["--store", "milvus", "--milvus-uri", uri]
    from_env = {"TRANSFERLAB_STORE": "milvus", "TRANSFERLAB_MILVUS_URI": uri}
    for argv, env in (
        (["search", "--data", noise, "--query", query, "--method", "cosine", *flags], {}),
        (["index", "--data", noise, "--method", "cosine"], from_env),
        (["retrieval-eval", "--data", noise, *flags], {}),  # every method: l1 left out, cosine tried
    ):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        code = main([*map(str, argv), *small])
        out, err = capfd.readouterr()
        for k in env:
            monkeypatch.delenv(k)
        assert code == 2 and out == "" and "Traceback" not in err and "RPC error" not in err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and lines[0].startswith(f"error: Cannot reach the Milvus server at {uri}")
    code = main(["search", "--data", str(noise), "--query", str(query), "--method", "l1", "--store", "milvus", *small])
    out, err = capfd.readouterr()
    assert code == 2 and "error: Milvus has no L1 metric" in err and "Traceback" not in err


def test_a_milvus_lite_file_held_by_another_process_is_named(tmp_path, settings):
    fcntl = pytest.importorskip("fcntl")
    noise = noise_folder(tmp_path / "noise", 2)
    db = tmp_path / "held.db"
    db.mkdir()
    with open(db / "LOCK", "w") as held:  # as Milvus Lite in another process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError) as e:
            open_index(noise, "cosine", SMALL, settings=settings, store=StoreConfig("milvus", str(db)))
        fcntl.flock(held, fcntl.LOCK_UN)
    assert str(e.value).startswith(f"The Milvus Lite file {db} is in use by another process")
    assert "--store faiss" in str(e.value)
    try:
        _, r = open_index(noise, "cosine", SMALL, settings=settings, store=StoreConfig("milvus", str(db)))
        assert r.action == "built"  # free again: it opens
    finally:
        milvus.close_clients()


@pytest.mark.slow
def test_from_the_command_line_a_held_file_is_one_line_not_a_logged_traceback(tmp_path, settings):
    """Milvus Lite logs its failure to start with a traceback; a real ``python -m core`` shows only the error."""
    fcntl = pytest.importorskip("fcntl")
    noise = noise_folder(tmp_path / "noise", 2)
    db = tmp_path / "held.db"
    db.mkdir()
    with open(db / "LOCK", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = subprocess.run(
            [sys.executable, "-m", "core", "index", "--data", str(noise), "--method", "cosine", "--pixel-size", "8x8"]
            + ["--store", "milvus", "--milvus-uri", str(db), "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [
        f"error: The Milvus Lite file {db} is in use by another process (one process at a time: the app or another "
        "command): stop it, give another file with --milvus-uri (TRANSFERLAB_MILVUS_URI), or use the FAISS store: "
        "--store faiss (TRANSFERLAB_STORE=faiss)."
    ]


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_index_search_and_eval_on_milvus_lite(tmp_path, settings, milvus_lite, capfd):
    noise = noise_folder(tmp_path / "noise", 4)
    flags = ("--store", "milvus", "--milvus-uri", milvus_lite.uri, "--pixel-size", "12x16", "--quiet")
    assert main(["index", "--data", str(noise), "--method", "cosine", *flags]) == 0
    out, _ = capfd.readouterr()
    [built] = json.loads(out.strip().splitlines()[-1])
    assert built["action"] == "built" and built["store"] == "milvus" and "in Milvus" in out
    query = noise / "b" / "2.png"
    assert main(["search", "--data", str(noise), "--query", str(query), "--method", "cosine", "-k", "3", *flags]) == 0
    out, err = capfd.readouterr()
    hits = json.loads(out.strip().splitlines()[-1])
    assert len(hits) == 3 and "left out of its own results" in err and all(h["path"] != str(query) for h in hits)
    want = open_index(noise, "cosine", SMALL, settings=settings)[0].search(query, 3, exclude_file="b/2.png")
    assert [h["path"] for h in hits] == [n.path for n in want.neighbours]
    assert [h["score"] for h in hits] == pytest.approx([n.score for n in want.neighbours], abs=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_every_method_on_milvus_leaves_out_l1_and_says_why(tmp_path, settings, milvus_lite, capfd):
    noise = noise_folder(tmp_path / "noise", 4)
    argv = ["retrieval-eval", "--data", str(noise), "--store", "milvus", "--milvus-uri", milvus_lite.uri, "--quiet"]
    assert main([*argv, "--pixel-size", "12x16", "-k", "3"]) == 0
    out, err = capfd.readouterr()
    assert set(json.loads(out.strip().splitlines()[-1])["methods"]) == {"cosine", "deep"}
    assert "l1 left out: Milvus has no L1 metric" in err
