"""Deep + triplet: the head learns what raw features mix (and does nothing without its loss), fits on the
training split only and is measured on the held-out one, is stored whole and found again, and is the ``triplet``
method of index, search and retrieval-eval — built from the cached deep vectors, never embedding photos twice."""

from __future__ import annotations

import json
import os
import shutil

import faiss
import numpy as np
import pytest
import torch

from core.cli import main
from core.errors import ConfigError, DataError
from core.files import remove_stale_temporaries
from core.retrieval import projection, triplet
from core.retrieval.embedders import DeepEmbedder
from core.retrieval.index import clear_memory_cache, open_index
from core.retrieval.metrics import evaluate_index, held_out_quality
from core.retrieval.projection import EMBEDDERS, latest_embedder, list_embedders, load_head, project
from core.retrieval.triplet import TripletConfig, fit_head, train_embedder, train_test_split
from core.runs.store import RunStore
from tests.helpers import needs_shared_flowers, shared_flowers_subset

IP = faiss.METRIC_INNER_PRODUCT
FAST = TripletConfig(epochs=20, hidden=64, m_per_class=16, batch_size=32)  # the synthetic set is small


def mixed_classes(per_class=300, signal=3, noise=200, shift=0.45, spread=0.3, seed=0):
    """Two classes told apart only by the means of ``signal`` dimensions (±``shift``), hidden among ``noise``
    dimensions of the same overall variance: in the raw (L2-normalised) space the noise decides most distances,
    while a linear map onto the signal dimensions separates the classes."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], per_class)
    x = rng.normal(0, np.hypot(shift, spread), (len(y), signal + noise))
    x[:, :signal] = rng.normal(0, spread, (len(y), signal)) + np.where(y[:, None] == 0, -shift, shift)
    x = x[:, rng.permutation(signal + noise)]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def _held_out_precision(x, y, test, k=10):
    return held_out_quality("m", x, y, test, k, IP).precision_at_k


@pytest.fixture(autouse=True)
def fresh_memory():
    clear_memory_cache()
    yield
    clear_memory_cache()


# ------------------------------------------------------------------------------------------ the learning


def test_triplet_training_separates_what_the_raw_features_mix():
    x, y = mixed_classes()
    train, test = train_test_split(y, 0.3, seed=0)
    before = _held_out_precision(x, y, test)
    head, curve = fit_head(x[train], y[train], FAST)
    after = _held_out_precision(project(head, x), y, test)
    assert 0.5 <= before < 0.72  # two classes: chance is about 0.5
    assert after > 0.9 and after > before + 0.2
    assert curve[-1] < curve[0]  # the loss went down


def test_without_its_loss_the_head_does_not_learn(monkeypatch):
    """The control: the same training with a loss that is always zero leaves held-out precision where the raw
    features had it — so the test above measures the loss, not the architecture or the standardisation."""

    class NoLoss:
        def __init__(self, **kwargs):
            pass

        def __call__(self, embeddings, labels, indices_tuple=None):
            return (embeddings * 0).sum()

    monkeypatch.setattr(triplet.losses, "TripletMarginLoss", NoLoss)
    x, y = mixed_classes()
    train, test = train_test_split(y, 0.3, seed=0)
    before = _held_out_precision(x, y, test)
    head, curve = fit_head(x[train], y[train], FAST)
    assert curve == [0.0] * FAST.epochs
    assert _held_out_precision(project(head, x), y, test) < before + 0.05


def test_fitting_is_seeded_and_leaves_the_thread_count_as_it_was():
    x, y = mixed_classes(per_class=60, noise=20)
    threads = torch.get_num_threads()
    a, curve_a = fit_head(x, y, TripletConfig(epochs=2, hidden=16, seed=3))
    b, curve_b = fit_head(x, y, TripletConfig(epochs=2, hidden=16, seed=3))
    c, _ = fit_head(x, y, TripletConfig(epochs=2, hidden=16, seed=4))
    assert torch.get_num_threads() == threads
    assert curve_a == curve_b and all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    np.testing.assert_allclose(np.linalg.norm(project(a, x), axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"epochs": 0}, "epochs"),
        ({"miner": "easy"}, "miner must be one of semihard, hard, all"),
        ({"margin": 0}, "margin"),
        ({"test_share": 0.9}, "held-out share"),
        ({"batch_size": 16}, "at least two classes"),
        ({"backbone": "vgg99"}, "Unknown backbone"),
        ({"lr": -1}, "learning rate"),
    ],
)
def test_bad_settings_are_a_clear_config_error(change, words):
    with pytest.raises(ConfigError, match=words):
        TripletConfig(**change).validate()


def test_one_class_cannot_be_trained():
    x, _ = mixed_classes(per_class=10, noise=5)
    with pytest.raises(DataError, match="at least 2 classes"):
        fit_head(x, np.zeros(len(x), dtype=np.int64), TripletConfig(epochs=1))


# ----------------------------------------------------------------------------- training on a dataset


def test_only_the_training_split_is_fitted_and_the_test_split_measures(tiny_folder, settings, monkeypatch):
    fitted = []
    real_fit = triplet.fit_head

    def spy(features, labels, cfg, on_progress):
        fitted.append(features.copy())
        return real_fit(features, labels, cfg, on_progress)

    monkeypatch.setattr(triplet, "fit_head", spy)
    progress = []
    record = train_embedder(tiny_folder, TripletConfig(epochs=2, seed=5), settings, lambda *a: progress.append(a))
    train, test = record.train_files, record.test_files
    deep, _ = open_index(tiny_folder, "deep", settings=settings)
    assert not set(train) & set(test) and sorted(train + test) == sorted(deep.files)
    assert len(test) == 5 * 3  # 20% of each class of 16 photos
    rows = [deep.files.index(f) for f in train]
    np.testing.assert_array_equal(fitted[0], deep.vectors()[rows])  # exactly the training photos' deep vectors
    assert any(m.startswith("training the triplet head") for *_, m in progress)
    assert progress[-1][0] == progress[-1][1]  # the bar ends full

    # the held-out figures are those of the test list as queries, each against every other photo
    s = record.summary
    test_ids = [deep.files.index(f) for f in test]
    want = held_out_quality("deep", deep.vectors(), deep.labels, test_ids, 10, IP)
    assert s["held_out"]["deep"]["precision_at_k"] == pytest.approx(want.precision_at_k)
    assert s["held_out"]["deep"]["queries"] == s["test_photos"] == 15 and s["train_photos"] == 65
    assert s["protocol"].startswith("held-out: 15 test photos") and "other 79 photos" in s["protocol"]
    head, _ = load_head(record)
    trip = held_out_quality("triplet", project(head, deep.vectors()), deep.labels, test_ids, 10, IP)
    assert s["held_out"]["triplet"]["precision_at_k"] == pytest.approx(trip.precision_at_k)
    assert s["epochs"] == 2 and len(s["loss_curve"]) == 2 and s["seconds"] >= s["fit_seconds"] > 0

    # stored whole, under the run store's dot-folder, which the run listing skips
    assert record.dir.parent == settings.runs_dir / EMBEDDERS
    assert {p.name for p in record.dir.iterdir()} == {"config.json", "head.pt", "summary.json"}
    assert json.loads((record.dir / "config.json").read_text())["fingerprint"]
    assert torch.load(record.weights, weights_only=True).keys() == head.state_dict().keys()
    assert RunStore(settings.runs_dir).list_runs() == []
    assert not list(record.dir.parent.glob(".*tmp*"))  # no temporary folder left behind


def test_the_latest_embedder_is_found_and_damaged_ones_are_skipped(tiny_folder, settings):
    first = train_embedder(tiny_folder, TripletConfig(epochs=1, seed=0), settings)
    second = train_embedder(tiny_folder, TripletConfig(epochs=1, seed=1), settings)
    assert latest_embedder(tiny_folder, "auto", settings).id == second.id
    assert latest_embedder(tiny_folder, "mobilenetv3_small", settings) is None
    assert latest_embedder(tiny_folder.parent, "auto", settings) is None
    assert second.describe().startswith(f"{second.id}: 1 epochs on 65 photos of {tiny_folder.resolve()}")
    assert "held-out precision@10 deep 0." in second.describe()
    (second.dir / "summary.json").write_text("{ torn")
    killed = settings.runs_dir / EMBEDDERS / f".{first.id}-again.tmp123"  # a training killed while storing
    killed.mkdir()
    assert [r.id for r in list_embedders(settings)] == [first.id]
    assert latest_embedder(tiny_folder, "auto", settings).id == first.id
    assert remove_stale_temporaries(settings.written_folders(), older_than=-1) == 1 and not killed.exists()


# ------------------------------------------------------------------------------------- the triplet method


def test_the_triplet_index_projects_the_cached_deep_vectors(tiny_folder, settings, monkeypatch):
    deep, _ = open_index(tiny_folder, "deep", settings=settings)
    record = train_embedder(tiny_folder, TripletConfig(epochs=1), settings)
    embedded = []
    real = DeepEmbedder.embed_files

    def counting(self, paths, *args):
        embedded.append(paths)
        return real(self, paths, *args)

    monkeypatch.setattr(DeepEmbedder, "embed_files", counting)
    index, report = open_index(tiny_folder, "triplet", settings=settings)
    assert embedded == []  # no photo embedded again: the deep index's vectors went through the head
    assert report.action == "built" and index.embedder.dim == 128 and record.id in report.embedder
    head, sha = load_head(record)
    # numpy, although pytorch-metric-learning imported faiss.contrib.torch_utils (faiss then returns torch tensors
    # wherever it allocates the result itself)
    assert isinstance(index.vectors(), np.ndarray) and isinstance(deep.vectors(), np.ndarray)
    np.testing.assert_allclose(index.vectors(), project(head, deep.vectors()), atol=1e-5)
    assert sha[:16] in index.embedder.key and deep.embedder.key in index.embedder.key
    # a dataset photo as a query (through the deep embedder, then the head) finds itself first
    hit = index.search(tiny_folder / index.files[7], k=1).neighbours[0]
    assert hit.file == index.files[7] and hit.score > 0.99
    # leave-one-out would score it on the photos it was fitted on: its held-out test photos are the queries
    q = evaluate_index(index, 5)
    assert q.protocol.startswith("held-out") and q.queries == len(record.test_files)
    # a new head is a new embedder: a new index, not the old one reused
    train_embedder(tiny_folder, TripletConfig(epochs=1, seed=9), settings)
    again, r2 = open_index(tiny_folder, "triplet", settings=settings)
    assert r2.action == "built" and again.path != index.path


def test_the_triplet_method_without_a_trained_head_says_what_to_run(tiny_folder, settings):
    with pytest.raises(ConfigError) as e:
        open_index(tiny_folder, "triplet", settings=settings)
    msg = str(e.value)
    assert f"python -m core train-embedder --data {tiny_folder.resolve()}" in msg
    assert projection.TRAIN_BUTTON in msg and "Search page" in msg


# -------------------------------------------------------------------------------------------------- CLI


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _last(out):
    return json.loads(out.strip().splitlines()[-1])


def test_cli_train_embedder_then_index_search_and_eval(tiny_folder, settings, capsys):
    data = ("--data", tiny_folder, "--quiet")
    code, _, err = _cli(capsys, "index", *data, "--method", "triplet")
    assert code == 2 and "train-embedder --data" in err and "Traceback" not in err and len(err.splitlines()) == 1
    code, out, err = _cli(capsys, "index", *data)  # every method there is: triplet left out, saying why
    assert code == 0 and [r["method"] for r in _last(out)] == ["l1", "cosine", "deep"]
    assert "triplet left out" in err and "train-embedder" in err

    code, out, err = _cli(capsys, "train-embedder", *data, "--epochs", "3", "--seed", "2")
    assert code == 0, err
    got = _last(out)
    assert set(got["held_out"]) == {"deep", "triplet"} and got["k"] == 10 and got["protocol"].startswith("held-out")
    assert set(got["held_out"]["triplet"]) == {"precision_at_k", "map_at_k"}
    assert os.path.isdir(got["folder"]) and got["id"] in got["folder"] and got["train_photos"] == 65
    assert "deep + triplet  precision@10" in err
    record = latest_embedder(tiny_folder, "auto", settings)
    assert record.id == got["id"] and record.config["config"]["epochs"] == 3 and record.config["config"]["seed"] == 2
    load_head(record)

    code, out, _ = _cli(capsys, "index", *data, "--method", "triplet", "--method", "deep", "--method", "triplet")
    assert code == 0 and [r["method"] for r in _last(out)] == ["triplet", "deep"]  # each once, in order
    code, out, _ = _cli(capsys, "index", *data)
    assert [r["method"] for r in _last(out)] == ["l1", "cosine", "deep", "triplet"]

    query = tiny_folder / record.test_files[0]
    code, out, err = _cli(capsys, "search", *data, "--query", query, "--method", "triplet", "-k", "3")
    hits = _last(out)
    assert code == 0 and len(hits) == 3 and "Deep + triplet: 3 neighbours" in err
    assert all(h["path"] != str(query.resolve()) for h in hits)
    code, out, _ = _cli(capsys, "search", *data, "--query", query, "--method", "deep", "--method", "triplet", "-k", "2")
    both = _last(out)
    assert code == 0 and list(both) == ["deep", "triplet"] and all(len(v) == 2 for v in both.values())
    code, out, _ = _cli(capsys, "search", *data, "--query-id", record.test_files[0], "--method", "deep", "--method",
                        "triplet", "-k", "2")  # fmt: skip
    assert code == 0 and _last(out) == both  # a photo of the index by its path: the same neighbours

    code, out, err = _cli(capsys, "retrieval-eval", *data, "--method", "triplet", "--method", "deep")
    result = _last(out)
    assert code == 0 and list(result["methods"]) == ["triplet", "deep"] and result["protocol"].startswith("held-out")
    assert "15 test photos" in result["protocol"] and "every method measured the same way" in err
    # the same figures as training measured: the same held-out queries, the same protocol
    for method in ("deep", "triplet"):
        assert result["methods"][method]["precision_at_k"] == pytest.approx(got["held_out"][method]["precision_at_k"])

    code, _, err = _cli(capsys, "train-embedder", "--data", tiny_folder / "nowhere", "--quiet")
    assert code == 2 and "not found" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["train-embedder", "--epochs", "0"])
    assert "must be at least 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real flowers


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.timeout(600)
@needs_shared_flowers()
def test_triplet_beats_its_deep_features_on_held_out_real_flowers(tmp_path, settings):
    root = shared_flowers_subset(tmp_path / "flowers", 60)
    s = train_embedder(root, TripletConfig(seed=0), settings).summary
    deep, trip = s["held_out"]["deep"], s["held_out"]["triplet"]
    assert trip["precision_at_k"] > deep["precision_at_k"] + 0.03
    assert trip["map_at_k"] > deep["map_at_k"] + 0.05
    assert s["fit_seconds"] < 60
    shutil.rmtree(root)


def test_the_triplet_method_in_a_milvus_store(tiny_folder, settings, milvus_lite, monkeypatch):
    """On Milvus too, the triplet index is the deep index's vectors (read from the same store) through the head."""
    record = train_embedder(tiny_folder, TripletConfig(epochs=1), settings)
    deep, _ = open_index(tiny_folder, "deep", settings=settings, store=milvus_lite)
    embedded = []
    monkeypatch.setattr(DeepEmbedder, "embed_files", lambda self, paths, *a: embedded.append(paths))
    index, report = open_index(tiny_folder, "triplet", settings=settings, store=milvus_lite)
    assert embedded == [] and report.store == "milvus" and "transferlab_triplet_" in report.path
    head, _ = load_head(record)
    by_file = dict(zip(index.files, index.vectors()))
    want = project(head, deep.vectors())
    np.testing.assert_allclose([by_file[f] for f in deep.files], want, atol=1e-5)
