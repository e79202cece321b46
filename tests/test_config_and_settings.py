"""Configs round-trip through config.json, presets apply, settings come from the environment."""

from __future__ import annotations


import pytest

from core.config import PRESETS, RunConfig, apply_preset
from core.errors import ConfigError
from core.imagefolder import scan_image_folder
from core.settings import Settings
from tests.helpers import SHARED_FLOWERS, needs_shared_flowers


def test_config_round_trips_through_a_dict():
    cfg = apply_preset(RunConfig(), "quick demo")
    cfg.model.regime, cfg.model.freeze, cfg.train.seed = "finetune", 40, 7
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert RunConfig.from_dict({**cfg.to_dict(), "resolved": {"x": 1}}) == cfg  # extra keys in config.json


def test_presets_follow_the_notebook_and_a_quick_demo():
    notebook = apply_preset(RunConfig(), "notebook recipe")
    assert (notebook.data.img_size, notebook.train.lr, notebook.train.batch_size, notebook.train.epochs) == \
        (224, 1e-4, 32, 10)
    assert notebook.preset == "notebook recipe"
    quick = apply_preset(RunConfig(), "quick demo")
    assert quick.data.img_size < 224 and quick.train.epochs < notebook.train.epochs
    assert set(PRESETS) == {"quick demo", "notebook recipe"}
    with pytest.raises(ConfigError, match="Unknown preset"):
        apply_preset(RunConfig(), "turbo")


def test_settings_from_environment_and_defaults(tmp_path):
    s = Settings.from_env({"TRANSFERLAB_CACHE_DIR": str(tmp_path / "c"), "TRANSFERLAB_RUNS_DIR": str(tmp_path / "r"),
                           "TRANSFERLAB_RESNET18_WEIGHTS": str(tmp_path / "w.pth")})
    assert (s.cache_dir, s.runs_dir, s.resnet18_weights) == (tmp_path / "c", tmp_path / "r", tmp_path / "w.pth")
    d = Settings.from_env({})
    assert d.resnet18_weights is None and "transferlab" in str(d.cache_dir) and d.runs_dir.name == "runs"
    assert set(d.describe()) == {"TRANSFERLAB_CACHE_DIR", "TRANSFERLAB_RUNS_DIR", "TRANSFERLAB_RESNET18_WEIGHTS"}


@needs_shared_flowers()
def test_shared_flowers_scan_as_five_classes():
    listing = scan_image_folder(SHARED_FLOWERS)
    assert listing.classes == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    assert len(listing) == 2919
