"""A regime cuts the model into a frozen prefix and a trainable suffix; the prefix is computed once, in the fastest
runtime, within a memory budget, shared between runs — and all of it gives the same model as the plain path."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from core.data.decode import to_float
from core.models import runtime
from core.models.backbones import BACKBONES, create_model
from core.models.regimes import REGIMES, apply_regime
from core.models.runtime import FrozenPass, frozen_pass
from core.training import engine
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.dataset import prepare_data
from core.training.engine import Trainer
from core.training.feature_cache import STORE, View, run_view
from core.training.train import train_run

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed")


@pytest.fixture(autouse=True)
def _empty_store():
    STORE.clear()
    yield
    STORE.clear()


def _cfg(source, regime="finetune", backbone="efficientnet_lite0", img_size=48, **train):
    train = {"epochs": 2, "lr": 1e-3, "batch_size": 32, **train}
    return RunConfig(
        data=DataConfig(source=str(source), img_size=img_size),
        model=ModelConfig(backbone=backbone, regime=regime),
        train=TrainConfig(**train),
    )


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_stages_in_order_are_the_forward_pass_and_hold_every_parameter_once(backbone):
    torch.manual_seed(0)
    model, _ = create_model(backbone, 5, pretrained=False)
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    h = x
    for _, stage in model.stages():
        h = stage(h)
    assert torch.allclose(h, model(x), atol=1e-5)
    in_stages = [id(p) for _, s in model.stages() for p in s.parameters()]
    assert in_stages == [id(p) for p in model.parameters()]  # each once, in the model's own order


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("regime", list(REGIMES))
def test_the_prefix_is_frozen_and_the_suffix_starts_with_training(backbone, regime):
    model, _ = create_model(backbone, 5, pretrained=False)
    split = apply_regime(model, regime, backbone)
    assert not any(p.requires_grad for p in split.prefix.parameters())
    assert any(p.requires_grad for p in split.suffix[0].parameters())
    assert {id(p) for p in split.prefix.parameters()} | {id(p) for p in split.suffix.parameters()} == {
        id(p) for p in model.parameters()
    }
    assert split.caches == (regime in ("transfer", "finetune"))
    if regime == "transfer":
        assert list(split.suffix) == [model.head]
    split.train_mode()
    assert not any(m.training for m in split.prefix.modules())


def test_finetune_caches_up_to_the_block_before_its_first_trainable_tensor():
    # the notebook freezes ResNet18's first 50 tensors: the first trainable one is layer4.0.bn2.bias, inside
    # layer4's first block, so everything up to the end of layer3 is cached and layer4.0's frozen tensors run
    # each batch without gradients
    model, _ = create_model("resnet18", 5, pretrained=False)
    split = apply_regime(model, "finetune", "resnet18")
    assert split.cache_point == "body.layer3.1" and split.suffix[0] is model.body.layer4[0]
    assert not model.body.layer4[0].conv1.weight.requires_grad and model.body.layer4[0].bn2.bias.requires_grad
    lite, _ = create_model("efficientnet_lite0", 5, pretrained=False)
    assert apply_regime(lite, "finetune", "efficientnet_lite0").cache_point == "body.blocks.5.1"
    assert apply_regime(lite, "finetune", "efficientnet_lite0", freeze=0).caches is False


@pytest.mark.parametrize("choice", ["torch", pytest.param("onnxruntime", marks=needs_ort)])
def test_the_cache_gives_the_same_logits_as_the_uncached_path(choice, sample_folder, settings):
    data = prepare_data(DataConfig(source=str(sample_folder), img_size=64), settings)
    images = data.splits["train"].images[:24]
    torch.manual_seed(0)
    model, _ = create_model("efficientnet_lite0", 5, pretrained=True)
    split = apply_regime(model, "finetune", "efficientnet_lite0")
    trainer = Trainer(model, split, TrainConfig(precision="fp32", runtime=choice), cache_dir=settings.cache_dir)
    view = View(1, seed=3)
    cached = run_view(images, view, trainer._frozen_pass(images), batch_size=8)
    assert cached.dtype == torch.float16  # stored compactly
    split.eval_mode()
    with torch.no_grad():
        from_cache = split.suffix(cached.float().contiguous(memory_format=torch.channels_last))
        params = view.params(len(images), *images.shape[-2:])
        plain = model(view.augmentation.apply(to_float(images), params).contiguous(memory_format=torch.channels_last))
    assert trainer._frozen.runtime == choice
    assert (from_cache.argmax(1) == plain.argmax(1)).all()
    assert torch.allclose(from_cache, plain, atol=2e-2, rtol=2e-2)  # fp16 storage of the cut activations


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_frozen_means_frozen(sample_folder, settings):
    s = train_run(_cfg(sample_folder), settings)
    start, _ = create_model("efficientnet_lite0", 5, pretrained=True)
    split = apply_regime(start, "finetune", "efficientnet_lite0")
    best = torch.load(f"{s['run_dir']}/best.pt", weights_only=True)
    initial = start.state_dict()
    frozen_params = {n for n, p in start.named_parameters() if not p.requires_grad}
    prefix_buffers = {
        f"{name}.{b}" for name in split.stage_names[: split.cut] for b, _ in start.get_submodule(name).named_buffers()
    } & set(initial)  # saved ones: BatchNorm statistics
    assert prefix_buffers and frozen_params
    for name in frozen_params | prefix_buffers:  # weights and BatchNorm statistics alike
        assert torch.equal(best[name], initial[name]), name
    assert any(not torch.equal(best[n], initial[n]) for n, p in start.named_parameters() if p.requires_grad)
    assert s["setup"]["feature_cache"] is True and s["setup"]["cache_point"] == "body.blocks.5.1"
    assert s["test_acc"] >= 0.6, s  # chance is 0.2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_over_the_memory_budget_the_run_trains_uncached_and_says_so(sample_folder, settings, monkeypatch):
    monkeypatch.setattr(engine, "cache_budget", lambda: 1000)  # bytes: far too little for any view
    s = train_run(_cfg(sample_folder), settings)
    assert s["status"] == "finished" and s["setup"]["feature_cache"] is False
    note = " ".join(s["setup"]["notes"])
    assert "budget" in note and "every batch" in note
    assert s["test_acc"] >= 0.6, s  # still learns, the slow way


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_transfer_after_finetune_continues_from_its_cached_prefix(sample_folder, settings):
    data = prepare_data(DataConfig(source=str(sample_folder), img_size=48), settings)
    train_run(_cfg(sample_folder, "finetune", feature_views=1, precision="fp32"), settings, data=data)
    shared = train_run(_cfg(sample_folder, "transfer", feature_views=1, precision="fp32"), settings, data=data)
    assert shared["setup"]["cache_shared"] == "body.blocks.5.1"
    STORE.clear()
    alone = train_run(_cfg(sample_folder, "transfer", feature_views=1, precision="fp32"), settings, data=data)
    assert "cache_shared" not in alone["setup"]
    assert abs(shared["best_val_acc"] - alone["best_val_acc"]) <= 1 / 30 + 1e-6  # at most one image in 30


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_progressive_resizing_trains_small_then_at_full_size(tiny_folder, settings):
    s = train_run(_cfg(tiny_folder, "full", img_size=48, epochs=3, train_img_size=32, schedule="onecycle"), settings)
    from core.runs.store import load_run

    metrics = load_run(s["run_dir"]).metrics
    assert [m["img_size"] for m in metrics] == [32, 32, 48]
    lrs = [m["lr"] for m in metrics]
    assert lrs[-1] < max(lrs) and lrs[-1] < 1e-3  # one-cycle: warm up, then anneal below the peak


# ------------------------------------------------------------------------------------------------ runtime


@needs_ort
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_onnxruntime_computes_the_same_features_as_pytorch(backbone, tmp_path):
    model, _ = create_model(backbone, 5, pretrained=False)
    split = apply_regime(model, "finetune", backbone)
    x = torch.rand(4, 3, 64, 64)
    ours = frozen_pass(split.prefix, x, "fp32", choice="onnxruntime", cache_dir=tmp_path)
    assert ours.runtime == "onnxruntime" and list((tmp_path / "runtime").glob("*.onnx"))  # exported, cached
    assert torch.allclose(ours(x), FrozenPass(split.prefix, "fp32", torch.device("cpu"), False)(x), atol=1e-4)
    # auto measures both once and keeps the verdict
    auto = frozen_pass(split.prefix, x, "fp32", choice="auto", cache_dir=tmp_path)
    assert auto.runtime in ("torch", "onnxruntime") and "PyTorch" in auto.note
    assert (tmp_path / "runtime" / "choices.json").is_file()


def test_without_onnxruntime_pytorch_runs_it_and_the_setup_says_so(sample_folder, settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    s = train_run(_cfg(sample_folder, "transfer", epochs=2), settings)
    assert s["status"] == "finished"
    assert s["setup"]["runtime"].startswith("torch") and "not installed" in s["setup"]["runtime"]


def _resnet_head_pass(choice: str, cache_dir):
    """The frozen pass of an untrained ResNet18's transfer prefix (everything before the head), on ``choice``."""
    model, _ = create_model("resnet18", 5, pretrained=False)
    prefix = apply_regime(model, "transfer", "resnet18").prefix
    return frozen_pass(prefix, torch.rand(2, 3, 32, 32), "fp32", choice=choice, cache_dir=cache_dir)


@needs_ort
def test_a_failing_export_falls_back_to_pytorch(monkeypatch, tmp_path):
    def broken(*a, **k):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setattr(runtime, "_sessions", {})
    run = _resnet_head_pass("onnxruntime", tmp_path)
    assert run.runtime == "torch" and "export failed" in run.note and "unsupported operator" in run.note
    assert not list((tmp_path / "runtime").glob("*.onnx*"))  # nothing half-written left behind


@needs_ort
def test_outputs_that_differ_fall_back_to_pytorch(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime.OnnxPass, "__call__", lambda self, x: torch.zeros(len(x), 512))
    run = _resnet_head_pass("auto", tmp_path)
    assert run.runtime == "torch" and "differ" in run.note
