"""The MLP baseline (its size, that it learns, that it stays out of the four) and augmentation as a per-run choice
(off / flip-rotate / strong: what each does to the training batches, old configs, the strip, Compare's grouping)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from core.cli.training import add_parsers
from core.data.decode import to_float
from core.errors import ConfigError
from core.models.backbones import create_model
from core.models.mlp import HIDDEN, create_mlp
from core.models.regimes import BASELINES, REGIMES, apply_regime, describe_regimes, get_regime, mlp_param_count
from core.runs.compare import TABLE_COLUMNS, headline, regime_summary, runs_table
from core.runs.store import RunStore
from core.training.augment import CROP_SCALE, Augmentation, strong_params, views_of
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.engine import Trainer
from core.training.planner import plan_race, with_baselines
from core.training.train import train_run
from tests.helpers import open_app_page
from tests.test_planner import fake_throughput


def _images(n=16, px=32, seed=0) -> torch.Tensor:
    """uint8 images with structure (a gradient plus noise), so flips and crops change them."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 200, px).view(1, 1, 1, px).expand(n, 3, px, px)
    return (ramp + torch.randint(0, 55, (n, 3, px, px), generator=g)).to(torch.uint8)


# ----------------------------------------------------------------------------------------------- the MLP


@pytest.mark.parametrize("px", [32, 64])
def test_the_mlp_parameter_count_matches_its_layers(px):
    model = create_mlp(num_classes=5, img_size=px)
    widths = [3 * px * px, *HIDDEN, 5]
    expected = sum(w_in * w_out + w_out for w_in, w_out in zip(widths, widths[1:]))  # weights + biases per layer
    assert sum(p.numel() for p in model.parameters()) == expected == mlp_param_count(px, 5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(zip(widths, widths[1:]))
    split = apply_regime(model, "mlp", "resnet18")
    assert split.counts.trainable == expected and split.counts.frozen == 0
    assert not split.caches  # nothing frozen: every batch runs the whole MLP, augmented
    assert model(torch.rand(2, 3, px, px)).shape == (2, 5)


def test_at_224_px_the_mlp_outgrows_the_cnn_but_fits_a_laptop():
    resnet, _ = create_model("resnet18", 5, pretrained=False)
    cnn = sum(p.numel() for p in resnet.parameters())
    mlp = mlp_param_count(224, 5)
    assert mlp > 3 * cnn  # the point to show students: more parameters, no convolutions
    assert mlp * 4 * 4 < 1e9  # weights, gradients and Adam's two moments in fp32: under 1 GB


@pytest.mark.timeout(300)
def test_a_short_mlp_run_learns_the_sample_above_chance(sample_folder, settings):
    cfg = RunConfig(
        data=DataConfig(source=str(sample_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="mlp"),
        train=TrainConfig(epochs=4, lr=1e-3, augment="off"),
    )
    s = train_run(cfg, settings)
    chance = 1 / len(s["classes"])
    assert s["status"] == "finished" and s["test_acc"] >= 2 * chance, s
    assert s["trainable_params"] == mlp_param_count(32, len(s["classes"])) and s["augment"] == "off"
    runs = RunStore(settings.runs_dir).list_runs()
    assert "efficientnet" not in runs[0].run_id  # never labelled with a CNN it did not use
    row = runs_table(runs).iloc[0]
    assert row["backbone"] == "mlp" and row["regime"] == "mlp"


def test_the_four_stay_four():
    assert list(REGIMES) == ["scratch", "transfer", "finetune", "full"]
    assert "mlp" in BASELINES and "mlp" not in REGIMES and get_regime("mlp").baseline
    assert not any(r.baseline for r in REGIMES.values())
    assert set(describe_regimes("efficientnet_lite0")) == set(REGIMES)
    with pytest.raises(ConfigError):
        plan_race(600, fake_throughput(), [60] * 5, regimes=["scratch", "mlp"])  # the planner plans the four only


def test_baselines_join_the_launch_on_scratchs_images_unplanned():
    plan = plan_race(600, fake_throughput(), [60] * 5)
    from core.training.planner import race_configs

    configs = race_configs(plan, "sample", group="g-1")
    out = with_baselines(configs)
    assert out[: len(configs)] == configs and [c.model.regime for c in out[len(configs) :]] == ["mlp"]
    scratch, mlp = next(c for c in configs if c.model.regime == "scratch"), out[-1]
    assert (mlp.data.img_size, mlp.data.limit_per_class, mlp.train.epochs) == (
        scratch.data.img_size,
        scratch.data.limit_per_class,
        scratch.train.epochs,
    )
    assert mlp.group == "g-1" and mlp.plan == {} and mlp.train.train_img_size is None
    assert scratch.model.regime == "scratch"  # a copy: the launch's own configs are untouched


def test_the_cli_takes_the_mlp_and_the_augmentation():
    import argparse

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--regime", "mlp", "--augment", "strong"])
    assert (args.regime, args.augment) == ("mlp", "strong")
    race = parser.parse_args(["race", "--baselines", "--augment", "off"])
    assert race.baselines and race.augment == "off"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--regime", "scratch", "--augment", "wild"])
    with pytest.raises(ConfigError):  # an MLP has one input per pixel: one size for every epoch
        RunConfig(model=ModelConfig(regime="mlp"), train=TrainConfig(train_img_size=64)).validate()


# ---------------------------------------------------------------------------------------- augmentation


def _trainer(augment: str, regime: str = "mlp", **train) -> Trainer:
    if regime == "mlp":
        model = create_mlp(5, 32)
    else:
        model, _ = create_model("efficientnet_lite0", 5, pretrained=False)
    split = apply_regime(model, regime, "efficientnet_lite0")
    return Trainer(model, split, TrainConfig(augment=augment, precision="fp32", device="cpu", **train))


def test_off_leaves_the_training_batches_bit_identical():
    x = _images()
    trainer = _trainer("off")
    before = trainer.generator.get_state()
    batch = trainer._augmented(x)
    assert torch.equal(batch.contiguous(), to_float(x))  # bit for bit
    assert torch.equal(trainer.generator.get_state(), before)  # and nothing drawn
    assert torch.equal(Augmentation("off")(to_float(x), torch.Generator()), to_float(x))
    cached = _trainer("off", regime="transfer", feature_views=3, epochs=3)
    assert [v.augmented for v in cached._views()] == [False]  # the frozen-feature cache keeps the plain view only
    flip_rotate = _trainer("flip-rotate", regime="transfer", feature_views=3, epochs=3)
    assert [v.augmented for v in flip_rotate._views()] == [False, True, True]


def test_flip_rotate_flips_and_rotates_as_described():
    x = to_float(_images(32))
    flips = Augmentation("flip-rotate", rotation_degrees=0, hflip=True)(x, torch.Generator().manual_seed(1))
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flips, x)]
    same = [torch.equal(a, b) for a, b in zip(flips, x)]
    assert all(m or s for m, s in zip(mirrored, same))  # rotation 0: each image itself or its exact mirror
    assert 0 < sum(mirrored) < len(x)  # a coin per image
    rotated = Augmentation("flip-rotate", rotation_degrees=10, hflip=False)(x, torch.Generator().manual_seed(1))
    moved = (rotated - x).abs().flatten(1).mean(1)
    assert (moved > 0).all()
    assert len(set(moved.tolist())) == len(x)  # its own angle per image
    default = _trainer("flip-rotate")._augmented(_images(32))
    assert not torch.equal(default, x)


def test_strong_crops_and_jitters_each_image_its_own_way():
    px = 32
    p = strong_params(200, px, px, torch.Generator().manual_seed(0))
    assert ((p["top"] >= 0) & (p["top"] + p["h"] <= px) & (p["left"] >= 0) & (p["left"] + p["w"] <= px)).all()
    area = (p["h"] * p["w"]).float() / px**2
    assert area.max() <= 1 and area.min() < 0.6 and area.min() >= CROP_SCALE[0] * 0.7  # (boxes clipped, rounded)
    assert len(set(zip(p["top"].tolist(), p["left"].tolist()))) > 50  # a crop per image, not one per batch
    x = to_float(_images(16, px))
    a = Augmentation("strong")(x, torch.Generator().manual_seed(3))
    b = Augmentation("strong")(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape  # seeded from the caller's generator: reproducible
    assert a.min() >= 0 and a.max() <= 1
    for out, img in zip(a, x):
        assert not torch.equal(out, img) and not torch.equal(out, img.flip(-1))
    brightness = a.mean((1, 2, 3)) / x.mean((1, 2, 3))
    assert brightness.std() > 0.05  # colours jittered image by image


def test_the_strip_shows_what_the_network_gets():
    image = _images(1, 48)[0]
    off = views_of(image, Augmentation("off"))
    assert off.dtype == torch.uint8 and off.shape == (8, 3, 48, 48)
    assert all(torch.equal(v, image) for v in off)
    strong = views_of(image, Augmentation("strong"))
    assert len({v.numpy().tobytes() for v in strong}) == 8
    assert torch.equal(strong, views_of(image, Augmentation("strong")))  # the same strip on every rerun


def test_configs_saved_before_the_choice_load_as_what_they_did():
    old = RunConfig().to_dict()
    del old["train"]["augment"]
    assert RunConfig.from_dict(old).train.augment == "flip-rotate"
    old["train"].update(hflip=False, rotation_degrees=0.0)
    assert RunConfig.from_dict(old).train.augment == "off"
    new = RunConfig(train=TrainConfig(augment="strong")).to_dict()
    assert RunConfig.from_dict(new).validate().train.augment == "strong"
    with pytest.raises(ConfigError):
        TrainConfig(augment="wild").validate()


def _row(regime, augment, acc, seed=0, backbone="resnet18"):
    row = {c: None for c in TABLE_COLUMNS}
    row.update(regime=regime, augment=augment, backbone=backbone, dataset="flowers", seed=seed, of=3)
    row.update({"image px": 64, "test acc": acc, "train s": 10.0, "status": "finished", "run": f"{regime}{seed}"})
    return row


def test_compare_groups_by_regime_and_augmentation():
    df = pd.DataFrame(
        [
            _row("scratch", "off", 0.40),
            _row("scratch", "off", 0.42, seed=1),
            _row("scratch", "strong", 0.50),
            _row("transfer", "flip-rotate", 0.85),
            _row("mlp", "off", 0.30, backbone="mlp"),
        ]
    )
    summary = regime_summary(df)
    scratch = summary[summary["regime"] == "scratch"].set_index("augment")
    assert set(scratch.index) == {"off", "strong"} and scratch.loc["off", "runs"] == 2
    lines = headline(summary)
    assert len(lines) == 1 and "resnet18" in lines[0]  # the MLP joins the CNN's verdict, not one of its own


# ------------------------------------------------------------------------------------------------- page


def test_the_train_page_offers_augmentation_and_shows_its_strip(settings):
    at = open_app_page("app_pages/train.py", state={"preset": "notebook recipe"})
    radio = at.radio(key="augment")
    assert list(radio.options) == ["off", "flip + rotate", "strong: crop + colour jitter"]
    assert radio.value == "flip-rotate"
    assert any("What the network gets" in c.value for c in at.caption)
    images = at.get("image")
    assert images and len(images[-1].proto.imgs) == 8
    assert any("MLP baseline" in c.label for c in at.checkbox)
    text = " ".join(c.value for c in at.caption)
    assert f"{mlp_param_count(224, 5) / 1e6:.1f} M" in text  # the MLP's count at the page's 224 px


@pytest.mark.slow  # launches into the training worker
@pytest.mark.timeout(300)
def test_the_baseline_checkbox_adds_an_mlp_run_to_the_launch(settings):
    from core.app.jobs import shared_training

    training = shared_training(settings)
    try:
        at = open_app_page("app_pages/train.py", state={"preset": "notebook recipe"})
        at.number_input(key="epochs-notebook").set_value(1)
        at.number_input(key="px-notebook").set_value(32)
        for name in REGIMES:
            box = at.checkbox(key=f"regime-{name}")
            box.check() if name == "scratch" else box.uncheck()
        at.checkbox(key="baselines").check()
        at.radio(key="augment").set_value("off").run()
        at.button(key="run_selected").click().run()
        assert not at.exception, at.exception
        runs = sorted(RunStore(settings.runs_dir).list_runs(), key=lambda r: r.queued_at or 0)
        assert [r.config["model"]["regime"] for r in runs] == ["scratch", "mlp"]
        assert len({r.config["group"] for r in runs}) == 1 and runs[0].config["group"]
        assert all(r.config["train"]["augment"] == "off" for r in runs)
    finally:
        for run in training.store.list_runs():
            if run.active:
                training.stop(run.run_id, owner="", teacher=True)
        assert training.wait_idle(300)
        training.shutdown()
