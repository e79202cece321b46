"""Image retrieval (core): FAISS search against brute-force numpy, the index cache (reuse, invalidation,
incremental updates, on both vector stores), bad queries, the approximate index's recall, precision@k / mAP@k,
and the CLI. Milvus against FAISS, and what only Milvus does, is in test_vector_stores.py."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.errors import DataError
from core.retrieval.embedders import EmbedderConfig, PixelEmbedder
from core.retrieval.index import IndexConfig, clear_memory_cache, measure_recall, open_index
from core.retrieval.metrics import evaluate_index, quality_from_relevance
from core.retrieval.stores import StoreConfig
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tests.helpers import needs_shared_flowers, noise_folder, shared_flowers_subset

SMALL = EmbedderConfig(pixel_height=12, pixel_width=16)  # tiny pixel vectors keep the tests fast


def _pixels(path, h=12, w=16):
    """The expected raw-pixel vector, computed independently with plain PIL."""
    im = Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)
    return np.asarray(im, dtype=np.float64).reshape(-1)


@pytest.fixture
def noise(tmp_path):
    return noise_folder(tmp_path / "noise")


@pytest.fixture(params=["faiss", "milvus"])
def store(request):
    """``(store, method)``: each vector store, with a method it has: l1 on FAISS, cosine on Milvus (no L1 there)."""
    if request.param == "faiss":
        return StoreConfig("faiss"), "l1"
    return request.getfixturevalue("milvus_lite"), "cosine"


def _held(method, path, h=12, w=16):
    """The vector an index of ``method`` holds for the image at ``path``: pixels, L2-normalised for cosine."""
    v = _pixels(path, h, w)
    return v / np.linalg.norm(v) if method == "cosine" else v


def _is_itself(method, score):
    """Whether ``score`` is that of an image found by its own vector: L1 distance 0, cosine similarity 1."""
    return score == 0.0 if method == "l1" else abs(score - 1.0) < 1e-5


@pytest.fixture(autouse=True)
def fresh_memory():
    """Every test starts with nothing in memory: disk reuse is what a restart sees."""
    clear_memory_cache()
    yield
    clear_memory_cache()


# ------------------------------------------------------------------------------------- against brute force


@pytest.mark.parametrize("method", ["l1", "cosine"])
def test_pixel_search_matches_brute_force_numpy(noise, settings, method):
    index, report = open_index(noise, method, SMALL, settings=settings)
    assert report.action == "built" and report.images == 18 and report.kind == "flat"
    X = np.stack([_pixels(noise / f) for f in index.files])
    if method == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(index.vectors(), X, rtol=1e-6, atol=1e-6)
    for i, f in enumerate(index.files):
        got = index.search(noise / f, k=len(index) - 1, exclude_file=f)
        if method == "l1":
            ref = np.abs(X - X[i]).sum(1)
            order = [j for j in np.argsort(ref, kind="stable") if j != i]
        else:
            ref = X @ X[i]
            order = [j for j in np.argsort(-ref, kind="stable") if j != i]
        assert [n.file for n in got.neighbours] == [index.files[j] for j in order]  # same neighbours, same order
        assert [n.rank for n in got.neighbours] == list(range(1, len(order) + 1))
        np.testing.assert_allclose([n.score for n in got.neighbours], ref[order], rtol=1e-5)
        if method == "l1":  # whole-number pixels: L1 sums are exact, not just close
            assert [n.score for n in got.neighbours] == [float(v) for v in ref[order]]
        assert {n.label for n in got.neighbours} <= {"a", "b", "c"}
        assert all(n.label == n.file.split("/")[0] for n in got.neighbours)


def test_deep_search_matches_brute_force_numpy(noise, settings):
    index, report = open_index(noise, "deep", settings=settings)  # offline EfficientNet-Lite0 here
    assert report.action == "built" and "features" in report.embedder
    V = index.vectors().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0, atol=1e-5)
    scores, ids = index.search_vectors(V, len(index))
    S = V @ V.T
    for i in range(len(index)):
        np.testing.assert_array_equal(ids[i], np.argsort(-S[i], kind="stable"))
        np.testing.assert_allclose(scores[i], S[i][ids[i]], rtol=1e-4, atol=1e-5)
    # a dataset photo given as a query (same decode path as indexing) finds itself first
    started = time.perf_counter()
    got = index.search(noise / index.files[4], k=3)
    elapsed = time.perf_counter() - started
    assert got.neighbours[0].file == index.files[4] and got.neighbours[0].score > 0.99
    # the query time shown is the time of this call: both parts measured, together within its wall clock
    assert got.embed_seconds > 0 and got.search_seconds > 0
    assert got.embed_seconds + got.search_seconds <= elapsed


def test_leave_one_out_quality_matches_numpy(noise, settings):
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    X = np.stack([_pixels(noise / f) for f in index.files])
    labels = np.array([f.split("/")[0] for f in index.files])
    k = 5
    precisions, aps = [], []
    for i in range(len(X)):
        order = [j for j in np.argsort(np.abs(X - X[i]).sum(1), kind="stable") if j != i][:k]
        rel = [labels[j] == labels[i] for j in order]
        precisions.append(sum(rel) / k)
        n_rel = (labels == labels[i]).sum() - 1
        aps.append(sum(sum(rel[: r + 1]) / (r + 1) for r in range(k) if rel[r]) / min(k, n_rel))
    q = evaluate_index(index, k)
    assert q.protocol == "leave-one-out" and q.queries == 18 and q.k == k
    assert q.precision_at_k == pytest.approx(np.mean(precisions))
    assert q.map_at_k == pytest.approx(np.mean(aps))
    assert q.chance == pytest.approx(5 / 17)
    assert q.precision_at_k > q.chance  # colour bias per class: pixels do better than random


def test_leave_one_out_resumes_after_an_interruption_and_is_saved(noise, settings):
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    full = open_index(noise, "l1", SMALL, settings=type(settings)(settings.cache_dir / "b", settings.runs_dir))[0]
    want = full.leave_one_out(6, batch=5)
    seen = []

    def stop_after_two_batches(done, total, message):
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as a Streamlit rerun stops the script inside the callback

    with pytest.raises(KeyboardInterrupt):
        index.leave_one_out(6, stop_after_two_batches, batch=5)
    assert not index.has_leave_one_out(6)
    np.testing.assert_array_equal(index.leave_one_out(6, lambda d, t, m: seen.append(d), batch=5), want)
    assert seen == [5, 10, 15, 18]  # carried on from the third batch
    clear_memory_cache()
    again, _ = open_index(noise, "l1", SMALL, settings=settings)
    assert again.has_leave_one_out(6) and again.has_leave_one_out(3) and not again.has_leave_one_out(7)
    np.testing.assert_array_equal(again.leave_one_out(3), want[:, :3])


def test_quality_formula_on_a_hand_worked_example():
    # relevant at ranks 1 and 3 of 3, two relevant images exist: P@3 = 2/3, AP@3 = (1/1 + 2/3) / 2
    p, m = quality_from_relevance(np.array([[1, 0, 1]]), [2])
    assert p == pytest.approx(2 / 3) and m == pytest.approx((1 + 2 / 3) / 2)
    p, m = quality_from_relevance(np.array([[0, 0, 0], [1, 1, 1]]), [4, 10])
    assert p == pytest.approx(0.5) and m == pytest.approx(0.5)


def test_query_folder_protocol(noise, settings, tmp_path):
    queries = noise_folder(tmp_path / "queries", per_class=2, seed=9, classes=("a", "b", "zzz"))
    index, _ = open_index(noise, "cosine", SMALL, settings=settings)
    q = evaluate_index(index, 4, queries=queries)
    assert q.protocol == "query folder" and q.queries == 6
    X = index.vectors().astype(np.float64)
    labels = np.array([f.split("/")[0] for f in index.files])
    hits, aps = [], []
    for f in sorted(p.relative_to(queries).as_posix() for p in queries.rglob("*.png")):
        v = _pixels(queries / f)
        v /= np.linalg.norm(v)
        order = np.argsort(-(X @ v), kind="stable")[:4]
        rel = [labels[j] == f.split("/")[0] for j in order]  # class "zzz" is in no way relevant
        hits.append(sum(rel) / 4)
        if f.split("/")[0] in labels:
            aps.append(sum(sum(rel[: r + 1]) / (r + 1) for r in range(4) if rel[r]) / 4)
    assert q.precision_at_k == pytest.approx(np.mean(hits))
    assert q.map_at_k == pytest.approx(np.mean(aps))
    with pytest.raises(DataError, match="None of the query folder's classes"):
        evaluate_index(index, 4, queries=noise_folder(tmp_path / "other", 1, classes=("x", "y")))


# ------------------------------------------------------------------------------------------------- cache


def _count_embeds(monkeypatch):
    calls = []
    real = PixelEmbedder.embed_files

    def counting(self, paths, *a, **kw):
        calls.append([p.name for p in paths])
        return real(self, paths, *a, **kw)

    monkeypatch.setattr(PixelEmbedder, "embed_files", counting)
    return calls


def test_index_is_saved_and_reused_until_a_file_changes(noise, settings, monkeypatch, store):
    store, method = store
    calls = _count_embeds(monkeypatch)
    first, r1 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r1.action == "built" and r1.embedded == 18 and len(calls) == 1 and r1.store == store.kind
    again, r2 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r2.action == "reused" and again is first and len(calls) == 1  # from memory
    clear_memory_cache()  # as after a restart
    disk, r3 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r3.action == "reused" and len(calls) == 1 and disk is not first
    np.testing.assert_array_equal(disk.vectors(), first.vectors())
    assert "reused the cached index" in r3.describe()

    # one photo changes: only it is embedded again; its new pixels are what the index holds
    changed = noise / "b" / "2.png"
    Image.new("RGB", (24, 32), (5, 250, 5)).save(changed)
    os.utime(changed, ns=(1, 10**18))
    upd, r4 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r4.action == "updated" and r4.embedded == 1 and r4.reused_vectors == 17 and calls[-1] == ["2.png"]
    np.testing.assert_allclose(upd.vectors()[upd.files.index("b/2.png")], _held(method, changed), rtol=1e-6)
    hit = upd.search(changed, k=1).neighbours[0]
    assert hit.file == "b/2.png" and _is_itself(method, hit.score)

    # photos added: embedded on their own and added to the saved index
    Image.new("RGB", (30, 30), (250, 5, 5)).save(noise / "a" / "new.png")
    (noise / "d").mkdir()
    Image.new("RGB", (30, 30), (5, 5, 250)).save(noise / "d" / "x.png")
    add, r5 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r5.action == "added" and r5.embedded == 2 and calls[-1] == ["new.png", "x.png"] and len(add) == 20
    assert add.classes == ("a", "b", "c", "d") and add.search(noise / "d" / "x.png", 1).neighbours[0].label == "d"
    # ... and it equals a from-scratch build (in FAISS files), file for file
    clear_memory_cache()
    scratch_settings = type(settings)(cache_dir=settings.cache_dir / "elsewhere", runs_dir=settings.runs_dir)
    ref, _ = open_index(noise, method, SMALL, settings=scratch_settings)
    by_file = dict(zip(ref.files, ref.vectors()))
    for f, v in zip(add.files, add.vectors()):
        np.testing.assert_array_equal(v, by_file[f])

    # a photo removed: nothing to embed, the index shrinks
    (noise / "c" / "0.png").unlink()
    rem, r6 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r6.action == "updated" and r6.embedded == 0 and len(rem) == 19 and "c/0.png" not in rem.files
    assert sorted(n.file for n in rem.search(noise / "c" / "1.png", k=19).neighbours) == sorted(rem.files)
    clear_memory_cache()
    again, r7 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r7.action == "reused" and again.files == rem.files  # what was removed is gone from the store too


def test_building_reports_progress_and_reusing_does_not(noise, settings):
    calls = []
    open_index(noise, "cosine", SMALL, settings=settings, on_progress=lambda *a: calls.append(a))
    assert calls and calls[-1][:2] == (18, 18) and calls[-1][2].startswith("embedding images (raw pixels 12×16")
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    calls.clear()
    clear_memory_cache()
    assert (
        open_index(noise, "cosine", SMALL, settings=settings, on_progress=lambda *a: calls.append(a))[1].action
        == "reused"
        and calls == []
    )


def test_another_embedder_gets_its_own_index(noise, settings, store):
    store, method = store
    small, _ = open_index(noise, method, SMALL, settings=settings, store=store)
    other, r = open_index(noise, method, EmbedderConfig(pixel_height=8, pixel_width=10), settings=settings, store=store)
    assert r.action == "built" and other.path != small.path and other.embedder.dim == 8 * 10 * 3
    assert other.store.location != small.store.location  # another file, or another collection
    clear_memory_cache()
    assert open_index(noise, method, SMALL, settings=settings, store=store)[1].action == "reused"  # both kept


def test_a_damaged_index_file_is_rebuilt(noise, settings):
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    clear_memory_cache()
    index.path.write_bytes(index.path.read_bytes()[:100])
    again, r = open_index(noise, "l1", SMALL, settings=settings)
    assert r.action == "built" and len(again) == 18


def test_unreadable_files_are_skipped_once(noise, settings, monkeypatch, store):
    store, method = store
    (noise / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    calls = _count_embeds(monkeypatch)
    index, r = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r.skipped == ["a/broken.jpg"] and len(index) == 18 and "1 unreadable file(s) skipped" in r.describe()
    assert "a/broken.jpg" not in index.files and len(index.search(noise / "a" / "1.png", k=50).neighbours) == 18
    clear_memory_cache()
    again, r2 = open_index(noise, method, SMALL, settings=settings, store=store)
    assert r2.action == "reused" and r2.skipped == ["a/broken.jpg"] and len(calls) == 1


def test_a_folder_without_readable_images_is_a_clear_error(tmp_path, settings, store):
    store, method = store
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="could be read as an image"):
        open_index(tmp_path / "d", method, SMALL, settings=settings, store=store)
    with pytest.raises(DataError, match="not found"):
        open_index(tmp_path / "missing", method, SMALL, settings=settings, store=store)


# --------------------------------------------------------------------------------------------- bad queries


def test_bad_queries_give_a_clear_message_and_lose_nothing(noise, settings, tmp_path):
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs")
    good = (noise / "a" / "0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    Image.new("1", (12000, 10000)).save(tmp_path / "huge.png")  # 120 megapixels in a few kB
    for name, reason in (
        ("notes.jpg", "not in an image format"),
        ("cut.png", "damaged or cut short"),
        ("huge.png", "too large"),
    ):
        with pytest.raises(DataError) as e:
            index.search(tmp_path / name, k=3)
        msg = str(e.value)
        assert f"'{name}' cannot be used as a photo" in msg and reason in msg and "Use a JPEG, PNG or WebP" in msg
        assert "object at" not in msg and "Traceback" not in msg
    import io

    with pytest.raises(DataError, match="'upload.webp' cannot be used"):
        index.search(io.BytesIO(b"RIFF...."), k=3, name="upload.webp")
    assert len(index.search(noise / "a" / "1.png", k=3).neighbours) == 3  # the index still answers


def test_query_respects_exif_rotation_and_any_size(noise, settings, tmp_path):
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    src = Image.open(noise / "c" / "3.png")
    big = src.resize((src.width * 40, src.height * 40), Image.NEAREST)  # 960x1280: any size is fine
    big.rotate(90, expand=True).save(
        tmp_path / "turned.jpg", quality=98, exif=_orientation(6)
    )  # stored on its side, EXIF says "turn 90° CW"
    hit = index.search(tmp_path / "turned.jpg", k=1).neighbours[0]
    assert hit.file == "c/3.png"


def test_webp_and_png_queries_find_their_original(noise, settings, tmp_path):
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    src = Image.open(noise / "b" / "4.png")
    src.save(tmp_path / "q.webp", lossless=True)
    src.convert("RGBA").save(tmp_path / "q.png")  # with an alpha channel
    for name in ("q.webp", "q.png"):
        hit = index.search(tmp_path / name, k=1).neighbours[0]
        assert hit.file == "b/4.png" and hit.score == 0.0


def _orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


# -------------------------------------------------------------------------------------- approximate index


def test_approximate_index_above_the_threshold_reports_its_recall(noise, settings):
    cfg = IndexConfig(approx_threshold=10)
    index, r = open_index(noise, "l1", SMALL, cfg, settings=settings)
    assert r.kind == "hnsw" and index.kind == "hnsw"
    assert r.recall["k"] == 10 and r.recall["queries"] == 18 and 0.9 <= r.recall["recall"] <= 1.0
    assert "approximate HNSW search" in r.describe() and "recall@10 vs exact" in r.describe()
    exact, _ = open_index(noise, "l1", SMALL, settings=settings)
    assert exact.kind == "flat"
    got = index.search(noise / "b" / "1.png", k=5).neighbours
    want = exact.search(noise / "b" / "1.png", k=5).neighbours
    assert [n.file for n in got] == [n.file for n in want]  # on 18 images HNSW finds the same
    # one saved index per dataset, method and embedder: switching kinds re-uses its vectors, embeds nothing
    back, r2 = open_index(noise, "l1", SMALL, cfg, settings=settings)
    assert r2.action == "updated" and r2.embedded == 0 and r2.kind == "hnsw" and r2.recall == r.recall
    clear_memory_cache()
    again, r3 = open_index(noise, "l1", SMALL, cfg, settings=settings)
    assert r3.action == "reused" and r3.kind == "hnsw" and r3.recall == r.recall


def test_the_graph_search_is_widened_until_its_measured_recall_reaches_the_target():
    """A sparse graph searched narrowly misses neighbours; tuning doubles efSearch until recall@10 against
    exact search reaches the target, keeps that breadth, and a wide enough start is left alone."""
    import faiss

    from core.retrieval.index import tune_ef_search

    x = np.random.default_rng(0).standard_normal((3000, 32)).astype(np.float32)
    graph = faiss.IndexHNSWFlat(32, 8, faiss.METRIC_L2)
    graph.hnsw.efConstruction = 40
    graph.add(x)
    cfg = IndexConfig(hnsw_m=8, hnsw_ef_search=1, target_recall=0.95, max_ef_search=4096)
    graph.hnsw.efSearch = 1
    assert measure_recall(graph, faiss.METRIC_L2, 10, 200)["recall"] < 0.8  # narrow: far from exact
    tuned = tune_ef_search(graph, faiss.METRIC_L2, cfg)
    assert tuned["recall"] >= 0.95 and tuned["ef_search"] > 1 and graph.hnsw.efSearch == tuned["ef_search"]
    assert tuned["ef_search"] & (tuned["ef_search"] - 1) == 0  # doubled from 1
    graph.hnsw.efSearch = tuned["ef_search"] // 2
    assert measure_recall(graph, faiss.METRIC_L2, 10, 200)["recall"] < 0.95  # the smallest breadth that does
    wide = tune_ef_search(graph, faiss.METRIC_L2, IndexConfig(hnsw_ef_search=tuned["ef_search"] * 2))
    assert wide["ef_search"] == tuned["ef_search"] * 2  # already there: not widened
    capped = tune_ef_search(graph, faiss.METRIC_L2, IndexConfig(hnsw_ef_search=1, max_ef_search=2, target_recall=1.0))
    assert capped["ef_search"] == 2 and capped["recall"] < 1.0  # the cap wins, and the recall reached is said
    # a breadth whose queries would take longer than the budget is not taken: the search stays fast
    hurried = tune_ef_search(graph, faiss.METRIC_L2, IndexConfig(hnsw_ef_search=1, ef_latency_ms=0.0))
    assert hurried["ef_search"] == 1 and graph.hnsw.efSearch == 1 and hurried["recall"] < 0.8


def test_measured_recall_is_the_share_of_exact_neighbours_found():
    import faiss

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 16)).astype(np.float32)
    weak = faiss.IndexHNSWFlat(16, 4)
    weak.hnsw.efConstruction = 4
    weak.add(X)
    weak.hnsw.efSearch = 1  # a deliberately poor graph search
    got = measure_recall(weak, faiss.METRIC_L2, k=10, queries=300)
    # each vector's 10 nearest *other* vectors: itself, a free hit no outside query gets, is left out
    _, approx = weak.search(X, 11)
    approx = [[j for j in row if j != i][:10] for i, row in enumerate(approx)]
    d = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    exact = np.argsort(d, axis=1)[:, :10]
    manual = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert got == {"k": 10, "queries": 300, "recall": pytest.approx(manual)}
    assert got["recall"] < 0.99


# ----------------------------------------------------------------------------------- a run's own features


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_finished_runs_backbone_gives_its_own_index(tiny_folder, settings):
    from core.training.train import train_run

    cfg = RunConfig(
        data=DataConfig(source=str(tiny_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="full"),
        train=TrainConfig(epochs=1, lr=1e-3),
    )
    summary = train_run(cfg, settings)
    imagenet, _ = open_index(tiny_folder, "deep", settings=settings)
    tuned, r = open_index(tiny_folder, "deep", EmbedderConfig(run=summary["run_id"]), settings=settings)
    assert r.action == "built" and tuned.path != imagenet.path
    assert summary["run_id"] in tuned.embedder.key and "features of run" in tuned.embedder.description
    assert tuned.embedder.img_size == 32 and imagenet.embedder.img_size == 224
    assert not np.allclose(tuned.vectors(), imagenet.vectors())
    with pytest.raises(DataError, match="Run not found"):
        open_index(tiny_folder, "deep", EmbedderConfig(run="no-such-run"), settings=settings)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_deep_features_use_resnet18_when_its_weights_are_here(noise, settings, tmp_path, monkeypatch):
    import dataclasses

    import torch

    from core.models import backbones

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # nothing in the hub cache
    torch.manual_seed(0)
    weights = tmp_path / "r18.pth"
    torch.save(backbones._build_resnet18().state_dict(), weights)  # a local file, as users can point to
    with_r18 = dataclasses.replace(settings, resnet18_weights=weights)
    index, r = open_index(noise, "deep", settings=with_r18)  # backbone "auto"
    assert index.embedder.dim == 512 and r.embedder == "ImageNet ResNet18 features"
    assert "imagenet-resnet18" in index.embedder.key
    offline, _ = open_index(noise, "deep", settings=settings)  # no weights file: the offline backbone
    assert offline.embedder.dim == 1280 and offline.path != index.path


# ---------------------------------------------------------------------------------------------------- CLI


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_index_search_and_eval(noise, settings, capsys):
    code, out, _ = _cli(capsys, "index", "--data", str(noise), "--method", "l1", "--pixel-size", "12x16", "--quiet")
    assert code == 0 and "l1: built a new index: embedded 18 image(s)" in out
    assert json.loads(out.strip().splitlines()[-1])[0]["action"] == "built"
    code, out, _ = _cli(capsys, "index", "--data", str(noise), "--method", "l1", "--pixel-size", "12x16", "--quiet")
    assert "l1: reused the cached index" in out

    query = noise / "a" / "3.png"
    l1 = ("--method", "l1", "--pixel-size", "12x16", "--quiet")
    code, out, err = _cli(capsys, "search", "--data", str(noise), "--query", str(query), "-k", "4", *l1)
    hits = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and len(hits) == 4 and set(hits[0]) == {"path", "label", "score"}
    assert all(h["path"] != str(query.resolve()) for h in hits) and "left out of its own results" in err
    assert "score = L1 distance, lower is closer" in err
    assert [h["score"] for h in hits] == sorted(h["score"] for h in hits)  # L1: closest (smallest) first
    assert all(os.path.isabs(h["path"]) and h["label"] == os.path.basename(os.path.dirname(h["path"])) for h in hits)

    code, out, _ = _cli(capsys, "retrieval-eval", "--data", str(noise), "--pixel-size", "12x16", "-k", "5", "--quiet")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["k"] == 5 and set(result["methods"]) == {"l1", "cosine", "deep"}
    for m in result["methods"].values():
        assert set(m) == {"precision_at_k", "map_at_k"} and 0 <= m["precision_at_k"] <= 1
    index, _ = open_index(noise, "l1", SMALL, settings=settings)
    assert result["methods"]["l1"]["precision_at_k"] == pytest.approx(evaluate_index(index, 5).precision_at_k)


def test_cli_search_more_like_a_photo_in_the_index(noise, settings, capsys):
    """``--query-id`` names a photo by its path in the index: the same neighbours as its file, itself left out."""
    l1 = ("--method", "l1", "--pixel-size", "12x16", "-k", "5", "--quiet")
    code, by_file, _ = _cli(capsys, "search", "--data", str(noise), "--query", str(noise / "b" / "2.png"), *l1)
    assert code == 0
    code, by_id, err = _cli(capsys, "search", "--data", str(noise), "--query-id", "./b/2.png", *l1)
    assert code == 0 and by_id.splitlines()[-1] == by_file.splitlines()[-1]
    assert "left out of its own results" in err
    assert str((noise / "b" / "2.png").resolve()) not in by_id
    code, out, err = _cli(capsys, "search", "--data", str(noise), "--query-id", "b/99.png", *l1)
    assert code == 2 and "'b/99.png' is not a photo in the index" in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # one query, not two
        main(["search", "--data", str(noise), "--query", "x.png", "--query-id", "b/2.png"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_mistakes_exit_2_with_a_message(noise, settings, capsys, tmp_path):
    (tmp_path / "q.png").write_bytes(b"not a png")
    l1 = ("--method", "l1", "--pixel-size", "12x16", "--quiet")
    code, out, err = _cli(capsys, "search", "--data", str(noise), "--query", str(tmp_path / "q.png"), *l1)
    assert code == 2 and "'q.png' cannot be used as a photo" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "search", "--data", str(noise), "--query", str(tmp_path / "none.jpg"), "--quiet")
    assert code == 2 and "Query image not found" in err
    code, _, err = _cli(capsys, "retrieval-eval", "--data", str(tmp_path / "nothing"), "--quiet")
    assert code == 2 and "Dataset not found" in err
    with pytest.raises(SystemExit):
        main(["index", "--pixel-size", "big"])
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- real flowers


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.timeout(300)
@needs_shared_flowers()
def test_deep_features_beat_raw_pixels_on_real_flowers(tmp_path, settings):
    root = shared_flowers_subset(tmp_path / "flowers", 24)
    quality = {}
    for method in ("l1", "cosine", "deep"):
        index, _ = open_index(root, method, settings=settings)
        quality[method] = evaluate_index(index, 10)
    assert quality["deep"].precision_at_k > 0.6  # 5 classes: chance is about 0.2
    for pixels in ("l1", "cosine"):
        assert quality["deep"].precision_at_k > quality[pixels].precision_at_k + 0.2
        assert quality["deep"].map_at_k > quality[pixels].map_at_k + 0.2
    shutil.rmtree(root)
