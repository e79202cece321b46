"""The backbone zoo (core.explain.zoo and ``python -m core zoo``): a row per backbone, parameter counts that match
the published ones, weight sizes, latency measured once per machine, and the best accuracies of the run store."""

from __future__ import annotations

import dataclasses
import json

import pytest

import core.explain.zoo as zoo
from core.cli import main
from core.models.backbones import BACKBONES
from core.models.regimes import REGIMES
from core.runs.compare import dataset_name
from core.settings import Settings
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.train import train_run

BACKBONE = "efficientnet_lite0"


def test_every_backbone_has_a_row_and_parameter_counts_match_the_published_ones(settings):
    from torchvision.models import ResNet18_Weights

    rows = {row.name: row for row in zoo.zoo_table(settings)}
    assert list(rows) == list(BACKBONES)
    assert rows["resnet18"].parameters == ResNet18_Weights.IMAGENET1K_V1.meta["num_params"]  # 11,689,512
    lite = [rows[f"efficientnet_lite{v}"].parameters for v in (0, 1, 2)]
    assert lite[0] < lite[1] < lite[2], lite
    for name, row in rows.items():
        spec = BACKBONES[name]
        assert (row.imagenet_px, row.imagenet_top1, row.display) == (spec.imagenet_px, spec.imagenet_top1, spec.display)
        assert row.latency is None and set(row.best) == set(REGIMES)
        json.dumps(row.as_json(), allow_nan=False)


def test_weights_size_is_the_files_and_none_when_the_weights_are_absent(settings, monkeypatch, tmp_path):
    weights = tmp_path / "lite0.pth"
    weights.write_bytes(b"\0" * (3 * 2**20 + 2**19))  # 3.5 MiB
    spec = BACKBONES[BACKBONE]
    monkeypatch.setitem(
        BACKBONES, BACKBONE, dataclasses.replace(spec, weights_file=lambda s: weights, weights_source=lambda s: "here")
    )
    monkeypatch.setitem(
        BACKBONES,
        "resnet18",
        dataclasses.replace(BACKBONES["resnet18"], weights_file=lambda s: None, weights_source=lambda s: None),
    )
    rows = {row.name: row for row in zoo.zoo_table(settings)}
    assert (rows[BACKBONE].weights_mb, rows[BACKBONE].weights) == (3.5, "here")
    absent = rows["resnet18"]
    assert (absent.weights, absent.weights_mb) == (None, None)
    assert absent.parameters > 0 and absent.imagenet_top1 > 0  # still in the zoo, without its weights


@pytest.fixture
def counted(monkeypatch):
    """measure_latency replaced by a quick fake that records which backbones it measured."""
    calls = []

    def fake(backbone):
        calls.append(backbone)
        return {"batch1_ms": 1.0, "batch32_ms": 20.0, "images_per_s": 1600.0, "machine": zoo.machine_id()}

    monkeypatch.setattr(zoo, "measure_latency", fake)
    return calls


def test_latency_is_measured_only_when_asked_once_per_machine(settings, counted, monkeypatch, tmp_path):
    settings = dataclasses.replace(settings, cache_dir=tmp_path / "cache")  # an empty latency cache
    assert all(row.latency is None for row in zoo.zoo_table(settings))
    assert counted == []  # measure=False never measures

    progress = []
    rows = zoo.zoo_table(settings, measure=True, on_progress=lambda *p: progress.append(p))
    assert counted == list(BACKBONES) and all(row.latency["batch1_ms"] == 1.0 for row in rows)
    assert progress[-1] == (len(BACKBONES), len(BACKBONES), zoo.MEASURING)

    # again, and in another process (a fresh Settings reading the same file): from the cache
    again = zoo.zoo_table(Settings(cache_dir=settings.cache_dir, runs_dir=settings.runs_dir), measure=True)
    assert counted == list(BACKBONES) and [r.latency for r in again] == [r.latency for r in rows]

    monkeypatch.setattr(zoo, "machine_id", lambda: "another machine")
    assert all(row.latency is None for row in zoo.zoo_table(settings))  # not this machine's figures
    zoo.zoo_table(settings, measure=True)
    assert counted == list(BACKBONES) * 2
    cache = json.loads(zoo.latency_cache_path(settings).read_text())
    assert len(cache) == 2 * len(BACKBONES)  # both machines' figures kept


def test_a_damaged_latency_cache_is_measured_again(settings, counted, tmp_path):
    settings = dataclasses.replace(settings, cache_dir=tmp_path / "cache")
    zoo.latency_cache_path(settings).parent.mkdir(parents=True)
    zoo.latency_cache_path(settings).write_text('{"torn')
    assert all(row.latency is None for row in zoo.zoo_table(settings))
    zoo.zoo_table(settings, measure=True)
    assert counted == list(BACKBONES)


def test_latency_is_really_measured(monkeypatch):
    for name, value in (("LATENCY_PX", 32), ("LATENCY_BATCHES", (1, 2)), ("WARMUP", 1), ("REPEATS", 3)):
        monkeypatch.setattr(zoo, name, value)  # the same code path, less work: other tests share the cores
    latency = zoo.measure_latency(BACKBONE)
    assert latency["batch1_ms"] > 0 and latency["batch2_ms"] > 0
    assert latency["images_per_s"] == pytest.approx(2000 / latency["batch2_ms"], rel=0.01, abs=0.1)
    assert (latency["px"], latency["precision"], latency["repeats"]) == (32, "fp32", 3)
    assert (latency["isa"], latency["machine"]) == (zoo.cpu_isa(), zoo.machine_id()) and 0 < latency["cpu_share"]


def _cfg(folder, regime, seed):
    return RunConfig(
        data=DataConfig(source=str(folder), img_size=32, split_seed=seed),
        model=ModelConfig(backbone=BACKBONE, regime=regime),
        train=TrainConfig(epochs=1, seed=seed, lr=1e-3),
    )


def _set_source(settings, run_id, source):
    path = settings.runs_dir / run_id / "config.json"
    config = json.loads(path.read_text())
    config["data"]["source"] = source
    path.write_text(json.dumps(config))


def test_best_accuracy_per_regime_comes_from_the_finished_runs(settings, tiny_folder):
    t0, t1, f0 = (
        train_run(_cfg(tiny_folder, r, s), settings) for r, s in (("transfer", 0), ("transfer", 1), ("finetune", 0))
    )
    mine = (dataset_name(str(tiny_folder)),)
    rows = {row.name: row for row in zoo.zoo_table(settings, datasets=mine)}
    best = {"scratch": None, "transfer": max(t0["test_acc"], t1["test_acc"]), "finetune": f0["test_acc"], "full": None}
    assert rows[BACKBONE].best == pytest.approx(best)
    assert all(v is None for name, row in rows.items() if name != BACKBONE for v in row.best.values())

    # by default only the flowers dataset counts: the app's download, or its folder given as a path...
    assert all(v is None for row in zoo.zoo_table(settings) for v in row.best.values())
    _set_source(settings, t0["run_id"], "flowers")
    _set_source(settings, t1["run_id"], "/somewhere/flower_photos")
    _set_source(settings, f0["run_id"], "flowers")
    (settings.runs_dir / f0["run_id"] / "summary.json").unlink()  # ...and only finished runs: this one was killed
    flowers = zoo.zoo_table(settings)[list(BACKBONES).index(BACKBONE)].best
    assert flowers == pytest.approx({**best, "finetune": None})


def test_cli_prints_one_json_line_per_backbone(settings, capsys):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["name"] for r in rows] == list(BACKBONES)
    assert all({"parameters", "weights_mb", "latency", "best", "imagenet_top1"} <= set(r) for r in rows)
