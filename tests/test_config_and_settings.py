"""Configs round-trip through config.json, presets apply, settings come from the environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.data.imagefolder import scan_image_folder
from core.errors import ConfigError
from core.runs.compare import seconds
from core.settings import Settings
from core.training.config import (
    BUDGET_PRESETS,
    PRESET_NAMES,
    PRESETS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_preset,
    preset_configs,
    regime_defaults,
)
from tests.helpers import ROOT, SHARED_FLOWERS, needs_shared_flowers


def test_config_round_trips_through_a_dict():
    cfg = apply_preset(RunConfig(), "notebook recipe")
    cfg.model.regime, cfg.model.freeze, cfg.train.seed = "finetune", 40, 7
    cfg.plan = {"budget_seconds": 300, "predicted_seconds": 61.5}
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert RunConfig.from_dict({**cfg.to_dict(), "resolved": {"x": 1}}) == cfg  # extra keys in config.json


def test_presets_follow_the_notebook_or_a_time_budget():
    notebook = apply_preset(RegimeCfg("transfer"), "notebook recipe")
    assert (
        notebook.data.img_size,
        notebook.train.lr,
        notebook.train.batch_size,
        notebook.train.epochs,
        notebook.train.schedule,
    ) == (224, 1e-4, 32, 10, "constant")
    assert notebook.preset == "notebook recipe"
    assert BUDGET_PRESETS == {"5 minutes": 5, "quick demo": 2} and PRESET_NAMES[0] == "5 minutes"
    assert set(PRESETS) == {"notebook recipe"}
    with pytest.raises(ConfigError, match="Unknown preset"):
        apply_preset(RunConfig(), "turbo")


def RegimeCfg(regime: str) -> RunConfig:
    return RunConfig(model=ModelConfig(regime=regime))


def test_transfer_defaults_to_training_its_head_to_convergence():
    t = regime_defaults(RegimeCfg("transfer")).train
    assert t.epochs >= 20 and t.schedule == "onecycle" and t.lr > 1e-4 and t.weight_decay > 0
    for regime in ("scratch", "finetune", "full"):  # the others keep the notebook's settings
        assert regime_defaults(RegimeCfg(regime)).train == TrainConfig()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(train=TrainConfig(num_threads=100_000)), "Threads must be between 1 and"),
        (dict(train=TrainConfig(schedule="sometimes")), "Schedule must be one of"),
        (dict(train=TrainConfig(runtime="tpu")), "Runtime must be one of"),
        (dict(train=TrainConfig(train_img_size=256)), "must not exceed the image size"),
        (dict(train=TrainConfig(epochs=2, full_size_epochs=3)), "Full-size epochs"),
        (dict(model=ModelConfig(regime="finetune"), train=TrainConfig(train_img_size=112)), "Progressive resizing"),
    ],
)
def test_bad_training_settings_are_clear_errors(change, message):
    cfg = RunConfig(data=DataConfig(img_size=224), model=ModelConfig(regime="full"))
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_settings_from_environment_and_defaults(tmp_path):
    s = Settings.from_env(
        {
            "TRANSFERLAB_CACHE_DIR": str(tmp_path / "c"),
            "TRANSFERLAB_RUNS_DIR": str(tmp_path / "r"),
            "TRANSFERLAB_RESNET18_WEIGHTS": str(tmp_path / "w.pth"),
        }
    )
    assert (s.cache_dir, s.runs_dir, s.resnet18_weights) == (tmp_path / "c", tmp_path / "r", tmp_path / "w.pth")
    d = Settings.from_env({})
    assert d.resnet18_weights is None and "transferlab" in str(d.cache_dir) and d.runs_dir.name == "runs"
    assert d.data_roots is None  # unset: the app decides from where it listens (core.data.sources)
    assert set(d.describe()) == {
        "TRANSFERLAB_CACHE_DIR",
        "TRANSFERLAB_RUNS_DIR",
        "TRANSFERLAB_RESNET18_WEIGHTS",
        "TRANSFERLAB_DATA_ROOTS",
        "TRANSFERLAB_UPLOAD_BUDGET",
        "TRANSFERLAB_TEACHER_PASSWORD",
        "TRANSFERLAB_STORE",
        "TRANSFERLAB_MILVUS_URI",
        "TRANSFERLAB_MILVUS_TOKEN",
    }
    assert (d.store, d.milvus_uri, d.milvus_token) == ("faiss", "", "")  # FAISS unless told otherwise
    assert Settings.from_env({"TRANSFERLAB_TEACHER_PASSWORD": "s3cret"}).describe()["TRANSFERLAB_TEACHER_PASSWORD"] == (
        "(set)"
    )  # never shown
    assert "s3cret" not in repr(Settings.from_env({"TRANSFERLAB_TEACHER_PASSWORD": "s3cret"}))


@pytest.mark.real_data
@needs_shared_flowers()
def test_shared_flowers_scan_as_five_classes():
    listing = scan_image_folder(SHARED_FLOWERS)
    assert listing.classes == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    assert len(listing) == 2919


def test_preset_configs_apply_the_teachers_knobs_to_each_regime():
    regimes = ["scratch", "transfer", "finetune", "full"]
    knobs = dict(epochs=3, img_size=96, batch_size=16, lr=3e-4, freeze=40, seed=7, group="g-1")
    configs = preset_configs("sample", "efficientnet_lite0", regimes, "notebook recipe", **knobs)
    assert [c.model.regime for c in configs] == regimes
    for c in configs:
        assert (c.train.epochs, c.data.img_size, c.train.batch_size, c.train.lr) == (3, 96, 16, 3e-4)
        assert c.train.seed == c.data.split_seed == 7 and c.group == "g-1" and c.preset == "notebook recipe"
        assert c.model.freeze == (40 if c.model.regime == "finetune" else None)  # only finetune freezes N
    with pytest.raises(ConfigError, match="Image size"):
        preset_configs("sample", "efficientnet_lite0", ["full"], "notebook recipe", **{**knobs, "img_size": 8})


@pytest.mark.parametrize(
    "s, text", [(0.42, "0.4 s"), (35.2, "35 s"), (59.4, "59 s"), (60, "1 min 00 s"), (312.7, "5 min 12 s")]
)
def test_durations_read_as_a_person_says_them(s, text):
    assert seconds(s) == text


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_threads_follow_the_cores_a_container_or_cpuset_leaves_us():
    """On a machine shared by a cpuset (a container, ``taskset``), the default thread count is the cores this
    process may use, not the machine's: more threads than cores makes every step wait on the others."""
    code = (
        "import os, torch; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from core.settings import usable_cpus; from core.models.device import configure_threads; "
        "print(usable_cpus(), configure_threads(None), torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["1", "1", "1"]
