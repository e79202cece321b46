"""The engine and run store: short runs learn, Stop stops, the best epoch is kept, runs survive restarts."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

from core.errors import ConfigError, DataError
from core.models.backbones import create_model, get_backbone
from core.runs.evaluate import evaluate_run
from core.runs.store import RunStore, load_run
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.dataset import prepare_data
from core.training.events import BatchEnd, EpochEnd, RunEnd, RunStarted
from core.training.train import train_run


def _cfg(source, regime="transfer", backbone="efficientnet_lite0", img_size=64, **train):
    train = {"epochs": 4, "lr": 1e-3, "batch_size": 32, **train}
    return RunConfig(
        data=DataConfig(source=str(source), img_size=img_size),
        model=ModelConfig(backbone=backbone, regime=regime),
        train=TrainConfig(**train),
    )


def test_transfer_learns_the_sample_well_above_chance(sample_folder, settings):
    events = []
    s = train_run(_cfg(sample_folder), settings, on_event=events.append)
    assert s["status"] == "finished" and s["setup"]["feature_cache"] is True
    assert s["test_acc"] >= 0.6, s  # chance is 0.2
    assert s["trainable_params"] == 1280 * 5 + 5
    assert sum(map(sum, s["confusion"])) == s["n_test"] == 30
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert len(batches) == 4 * math.ceil(240 / 32) and batches[-1].eta_seconds == 0
    assert isinstance(events[-1], RunEnd) and events[-1].status == "finished"
    started = [e for e in events if isinstance(e, RunStarted)]
    assert len(started) == 1 and started[0].run_id == s["run_id"]
    # live progress is in the run store, for any process or browser session to read
    progress = load_run(s["run_dir"]).progress
    assert progress["phase"] == "train" and (progress["epoch"], progress["batch"]) == (4, progress["batches"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_finetune_trains_only_unfrozen_weights_and_learns(sample_folder, settings):
    s = train_run(_cfg(sample_folder, regime="finetune", epochs=3), settings)
    run = load_run(s["run_dir"])
    start, _ = create_model("efficientnet_lite0", 5, pretrained=True)
    params = list(start.named_parameters())
    n_frozen = get_backbone("efficientnet_lite0").notebook_freeze  # finetune's default N, none given here
    assert 0 < n_frozen < len(params) - len(list(start.head.parameters()))  # a cut inside the body
    assert run.config["resolved"]["frozen_tensors"] == n_frozen
    best = torch.load(run.dir / "best.pt", weights_only=True)
    changed = [not torch.equal(best[n], start.state_dict()[n]) for n, _ in params]
    assert not any(changed[:n_frozen])  # the first N tensors are still ImageNet's
    assert all(changed[n_frozen:])  # every other one trained
    assert s["trainable_params"] == sum(p.numel() for _, p in params[n_frozen:])
    assert s["test_acc"] >= 0.5, s


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_feature_cache_matches_the_plain_path(sample_folder, settings):
    data = prepare_data(DataConfig(source=str(sample_folder), img_size=64), settings)
    fast = train_run(_cfg(sample_folder, epochs=4, feature_cache="on"), settings, data=data)
    plain = train_run(_cfg(sample_folder, epochs=4, feature_cache="off"), settings, data=data)
    assert plain["setup"]["feature_cache"] is False
    assert abs(fast["best_val_acc"] - plain["best_val_acc"]) <= 0.2  # 30 val images: 6 images of noise
    assert plain["best_val_acc"] >= 0.5 and fast["best_val_acc"] >= 0.5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_best_checkpoint_is_the_epoch_with_lowest_val_loss(tiny_folder, settings):
    s = train_run(_cfg(tiny_folder, regime="scratch", backbone="resnet18", img_size=32, epochs=4, lr=3e-3), settings)
    run = load_run(s["run_dir"])
    losses = [m["val_loss"] for m in run.metrics]
    assert s["best_epoch"] == 1 + losses.index(min(losses))
    assert s["best_val_loss"] == pytest.approx(min(losses))
    # the saved checkpoint is that epoch's: evaluating it reproduces the summary's test accuracy
    assert evaluate_run(s["run_dir"], settings=settings)["accuracy"] == pytest.approx(s["test_acc"], abs=0.101)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stop_ends_the_run_within_a_batch_and_keeps_it_as_interrupted(sample_folder, settings):
    seen = []
    stop_after = 10  # batches: epoch 2, batch 2 of 8

    def on_event(e):
        if isinstance(e, BatchEnd):
            seen.append(e)

    s = train_run(
        _cfg(sample_folder, regime="full", epochs=5, img_size=48),
        settings,
        on_event=on_event,
        should_stop=lambda: len(seen) >= stop_after,
    )
    assert len(seen) == stop_after  # not one batch more after the request
    assert s["status"] == "interrupted" and s["epochs_done"] == 1
    run = load_run(s["run_dir"])
    assert run.status == "interrupted" and run.has_checkpoint and len(run.metrics) == 1


def test_runs_survive_a_restart_and_crashes_show_as_interrupted(tiny_folder, settings):
    s = train_run(_cfg(tiny_folder, epochs=2, img_size=32), settings)
    # "restart": a fresh store object reads everything back from disk
    runs = RunStore(settings.runs_dir).list_runs()
    assert [r.run_id for r in runs] == [s["run_id"]]
    r = runs[0]
    assert r.status == "finished" and r.summary["test_acc"] == s["test_acc"] and len(r.metrics) == 2
    assert r.config["model"]["regime"] == "transfer" and r.config["resolved"]["classes"][0] == "daisy"
    assert RunConfig.from_dict(r.config).train.epochs == 2

    # a run whose process died mid-way: status says running, no summary, and its lock went with the process
    crashed = RunStore(settings.runs_dir).create("scratch", "resnet18")
    crashed.write_config(r.config)
    crashed.write_status("running", started_at="x")
    crashed.append_metrics({"epoch": 1, "val_acc": 0.5})
    with open(crashed.dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "val_a')  # torn line from the crash
    assert load_run(crashed.dir).status == "running"  # held by this (live) process so far
    crashed.release()  # what the operating system does when the process dies
    rec = load_run(crashed.dir)
    assert rec.status == "interrupted" and rec.metrics == [{"epoch": 1, "val_acc": 0.5}]
    # its PID reused by another live process (here: this one) does not bring it back to life
    assert json.loads((crashed.dir / "status.json").read_text())["pid"] == os.getpid()
    assert load_run(crashed.dir).status == "interrupted"

    # a run still being written by a live process shows as running
    live = RunStore(settings.runs_dir).create("full", "resnet18")
    live.write_config(r.config)
    assert load_run(live.dir).status == "running"

    # a damaged folder shows as corrupt and does not break listing
    bad = settings.runs_dir / "20990101-000000-bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    statuses = {x.run_id: x.status for x in RunStore(settings.runs_dir).list_runs()}
    assert statuses[bad.name] == "corrupt" and statuses[s["run_id"]] == "finished"
    assert len(statuses) == 4


def test_bad_config_fails_before_creating_a_run(tiny_folder, settings):
    with pytest.raises(ConfigError, match="Epochs"):
        train_run(_cfg(tiny_folder, epochs=0), settings)
    with pytest.raises(ConfigError, match="Unknown regime"):
        train_run(RunConfig(model=ModelConfig(regime="nope")), settings)
    with pytest.raises(DataError):
        train_run(_cfg(tiny_folder.parent / "missing"), settings)
    assert RunStore(settings.runs_dir).list_runs() == []


def test_evaluate_on_another_folder_of_the_same_classes(tiny_folder, sample_folder, settings, tmp_path):
    s = train_run(_cfg(sample_folder, epochs=3), settings)
    other = evaluate_run(s["run_dir"], data=str(tiny_folder), settings=settings)
    assert other["n"] == 80 and set(other["per_class"]) == set(s["classes"])
    cm = other["confusion"]
    assert sum(map(sum, cm)) == 80 and other["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(5)) / 80)
    assert other["accuracy"] >= 0.5, other  # photos it never saw, 5 classes: chance is 0.2
    # a folder with only some of the classes: its labels follow the class names, not the folder's own order
    for cls in ("roses", "tulips"):
        shutil.copytree(tiny_folder / cls, tmp_path / "two" / cls)
    two = evaluate_run(s["run_dir"], data=str(tmp_path / "two"), settings=settings)
    assert two["n"] == 32 and [c for c, a in two["per_class"].items() if a is not None] == ["roses", "tulips"]
    for cls in ("roses", "tulips"):  # as in the whole folder, give or take one image of bf16 rounding
        assert two["per_class"][cls] == pytest.approx(other["per_class"][cls], abs=1 / 16 + 1e-6)
    (tmp_path / "odd" / "cactus").mkdir(parents=True)
    (tmp_path / "odd" / "daisy").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "odd" / "cactus" / "1.png")
    with pytest.raises(DataError, match="not trained on: cactus"):
        evaluate_run(s["run_dir"], data=str(tmp_path / "odd"), settings=settings)
