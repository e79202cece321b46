"""Heat maps point at the evidence, explain the prediction the run makes, and leave the model as it was; the
filters and feature maps are the network's own, strongest first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core.errors import ConfigError
from core.explain import cam as cam_module
from core.explain.cam import CAM_METHODS, explain_photo, heatmap, target_layer
from core.explain.features import feature_maps, feature_sheet, first_layer_filters
from core.models.backbones import create_model, get_backbone
from core.runs.predictions import predict_image

PX, PATCH = 32, 8  # images, and the coloured square that decides their class
COLOURS = ((0.9, 0.1, 0.1), (0.1, 0.2, 0.9), (0.1, 0.8, 0.1))  # red, blue, green: the classes with a square
# A last class, "plain", has no square: without it, the last colour could be learnt by the absence of the others,
# evidence with no place to point at.
CLASSES_N = len(COLOURS) + 1


def patch_images(n: int, seed: int, plain: bool = False):
    """``n`` grey noisy images, each with one coloured square at a random place (``plain``: a quarter without
    one, of the class "plain"): (images, labels, squares' top left corners)."""
    g = np.random.default_rng(seed)
    x = np.clip(0.5 + 0.12 * g.standard_normal((n, 3, PX, PX)), 0, 1).astype(np.float32)
    labels = g.integers(0, CLASSES_N if plain else len(COLOURS), n)
    corners = g.integers(0, PX - PATCH + 1, (n, 2))
    for img, label, (r, c) in zip(x, labels, corners):
        if label < len(COLOURS):
            img[:, r : r + PATCH, c : c + PATCH] = np.array(COLOURS[label], np.float32)[:, None, None]
    return torch.from_numpy(x), torch.from_numpy(labels), corners


class TinyCNN(nn.Module):
    """Three convs, global average pooling, a linear head: the shape of the backbones, in miniature."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(32, CLASSES_N)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def patch_model():
    """A TinyCNN trained (a few seconds) until it names the square's colour on held-out images."""
    torch.manual_seed(0)
    model = TinyCNN()
    x, y, _ = patch_images(768, seed=1, plain=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for i in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    model.eval()
    xt, yt, _ = patch_images(200, seed=2, plain=True)
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    assert accuracy >= 0.95, f"the tiny CNN did not learn the task ({accuracy:.0%}): the test below would mean nothing"
    return model


def hooks_of(model: nn.Module) -> list:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [(name, k) for name, m in model.named_modules() for k in kinds if getattr(m, k, None)]


def squares(corners) -> np.ndarray:
    """``(n, PX, PX)`` booleans: which pixels of each image are on its square."""
    on = np.zeros((len(corners), PX, PX), bool)
    for k, (r, c) in enumerate(corners):
        on[k, r : r + PATCH, c : c + PATCH] = True
    return on


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_the_heat_map_points_at_the_evidence(patch_model, method):
    x, y, corners = patch_images(60, seed=3)
    on = squares(corners)
    layer = patch_model.features[6]  # the last conv block's output (after its ReLU)
    hits = 0
    for k, (img, label) in enumerate(zip(x, y)):
        m = heatmap(patch_model, img[None], layer, int(label), method)
        assert m.shape == (PX, PX) and m.min() >= 0 and m.max() <= 1
        hits += on[k][np.unravel_index(np.argmax(m), m.shape)]
    chance = on.mean()  # where a random map's argmax lands: any pixel alike, so on a square this often
    assert hits / len(x) >= 0.9, f"{method}: the argmax is on the square in {hits}/{len(x)} images"
    assert chance <= hits / len(x) / 5, f"a random map would land on the square {chance:.0%} of the time"


def test_heat_maps_are_the_ones_of_the_class_asked(patch_model):
    """A square's map for its own colour peaks on it; the maps for the other colours (no evidence) do not."""
    x, y, corners = patch_images(60, seed=4)
    on = squares(corners)
    layer = patch_model.features[6]
    own, other = 0, 0
    for k, (img, label) in enumerate(zip(x, y)):
        for cls in range(len(COLOURS)):
            m = heatmap(patch_model, img[None], layer, cls, "gradcam")
            inside = on[k][np.unravel_index(np.argmax(m), m.shape)]
            own += inside and cls == int(label)
            other += inside and cls != int(label) and m.max() > 0  # an all-zero map has no peak
    assert own >= 0.9 * len(x) and other <= 0.05 * 2 * len(x)


@pytest.fixture(scope="module")
def lite():
    model, _ = create_model("efficientnet_lite0", 5, pretrained=False)
    return model.eval()


def photo(seed=0, size=(90, 70)) -> Image.Image:
    g = np.random.default_rng(seed)
    return Image.fromarray(g.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_explain_photo_explains_the_runs_prediction_and_leaves_the_model_as_it_was(method):
    lite, _ = create_model("efficientnet_lite0", 5, pretrained=False)
    lite.eval().body.blocks[0].requires_grad_(False)  # a frozen prefix, as the finetune regime leaves one
    flags = [p.requires_grad for p in lite.parameters()]
    pic = photo()
    ex = explain_photo(lite, "efficientnet_lite0", CLASSES, 48, pic, method=method)
    assert ex.target_layer == "body.bn2" == target_layer(lite, "efficientnet_lite0")[0]
    assert ex.img_size == 48 and "run's own" in ex.size_note and ex.precision == "float32"
    probs = [p for _, p in ex.top3]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    expected = predict_image(lite, CLASSES, 48, pic, k=3)  # the same preprocessing: the same prediction
    assert [n for n, _ in ex.top3] == [n for n, _ in expected]
    assert np.allclose(probs, [p for _, p in expected], atol=1e-5)
    assert ex.prediction == ex.top3[0]
    (c,) = ex.cams
    assert (c.label, c.role) == (ex.prediction[0], "predicted") and c.prob == pytest.approx(ex.prediction[1])
    assert c.heatmap.shape == (48, 48) and c.heatmap.dtype == np.float32
    assert 0 <= c.heatmap.min() and c.heatmap.max() <= 1 and c.overlay.size == (48, 48) and c.seconds > 0

    assert hooks_of(lite) == []
    assert [p.requires_grad for p in lite.parameters()] == flags
    assert all(p.grad is None for p in lite.parameters())
    assert not lite.training


def test_the_true_class_gets_its_own_map_at_the_size_asked(lite):
    pic = photo(1)
    pred = explain_photo(lite, "efficientnet_lite0", CLASSES, 48, pic).prediction[0]
    other = next(c for c in CLASSES if c != pred)
    ex = explain_photo(lite, "efficientnet_lite0", CLASSES, 48, pic, true_class=other, at_size=64)
    assert [(c.label, c.role) for c in ex.cams] == [(pred, "predicted"), (other, "true class")]
    assert all(c.heatmap.shape == (64, 64) for c in ex.cams) and ex.img_size == 64 and "48" in ex.size_note
    assert not np.allclose(ex.cams[0].heatmap, ex.cams[1].heatmap)
    same = explain_photo(lite, "efficientnet_lite0", CLASSES, 48, pic, true_class=pred)
    assert len(same.cams) == 1
    with pytest.raises(ConfigError, match="not one of the run's classes"):
        explain_photo(lite, "efficientnet_lite0", CLASSES, 48, pic, true_class="orchid")
    with pytest.raises(ConfigError, match="Unknown CAM method"):
        explain_photo(lite, "efficientnet_lite0", CLASSES, 48, pic, method="lime")


def test_score_cam_is_refused_with_its_cost_when_too_slow_and_the_model_is_left_clean(lite, monkeypatch):
    monkeypatch.setattr(cam_module, "SCORECAM_MAX_SECONDS", 0.0)
    with pytest.raises(ConfigError, match=r"Score-CAM would take about \d+ s here.*body\.bn2 \(1280 channels"):
        explain_photo(lite, "efficientnet_lite0", CLASSES, 32, photo(), method="scorecam")
    assert hooks_of(lite) == [] and all(p.requires_grad for p in lite.parameters()) and not lite.training


def test_score_cam_is_refused_when_its_masked_copies_would_not_fit(patch_model, monkeypatch):
    monkeypatch.setattr(cam_module, "SCORECAM_MAX_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"Score-CAM would need .* MB here.*32 channels"):
        heatmap(patch_model, patch_images(1, 5)[0], patch_model.features[6], 0, "scorecam")
    assert hooks_of(patch_model) == []


# ------------------------------------------------------------------------------------------------ features


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_the_filter_grid_has_one_tile_per_filter(backbone):
    model, _ = create_model(backbone, 5, pretrained=False)
    conv = model.body.get_submodule(get_backbone(backbone).first_conv)
    n, k = conv.out_channels, conv.kernel_size[0]
    img = first_layer_filters(model, backbone)
    tile, cols = 8 * k, 8
    rows = -(-n // cols)
    assert img.size == (cols * tile + (cols - 1) * 2, rows * tile + (rows - 1) * 2)
    # each tile is its own filter min-max normalised: the brightest weight of each filter is white-ish, its
    # darkest black-ish (a tile of a constant filter would be all black)
    px = np.asarray(img)
    for f in range(n):
        r, c = divmod(f, cols)
        t = px[r * (tile + 2) : r * (tile + 2) + tile, c * (tile + 2) : c * (tile + 2) + tile]
        assert t.max() == 255 and t.min() == 0
    w = conv.weight.detach()[0].permute(1, 2, 0).numpy()  # filter 0, as (k, k, 3)
    expected = ((w - w.min()) / (w.max() - w.min()) * 255).astype(np.uint8)
    assert np.abs(px[0:tile:8, 0:tile:8].astype(int) - expected).max() <= 1


def test_feature_maps_are_three_depths_strongest_first(lite):
    spec = get_backbone("efficientnet_lite0")
    pic = photo(2)
    seen = {}
    handles = [
        lite.body.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach()))
        for n in spec.depths
    ]
    try:
        predict_image(lite, CLASSES, 64, pic)  # the photo as the run sees it
    finally:
        for h in handles:
            h.remove()
    maps = feature_maps(lite, "efficientnet_lite0", pic, 64, per_depth=6)
    assert [m.depth for m in maps] == ["early", "middle", "late"]
    assert [m.layer for m in maps] == [f"body.{n}" for n in spec.depths]
    for fm, name in zip(maps, spec.depths):
        means = seen[name][0].mean(dim=(1, 2))
        assert fm.channels == len(means) and fm.size == seen[name].shape[-1] and len(fm.strongest) == 6
        chosen = means[list(fm.strongest)]
        assert torch.all(chosen[:-1] >= chosen[1:])  # strongest first …
        rest = [c for c in range(len(means)) if c not in fm.strongest]
        assert chosen.min() >= means[rest].max() - 1e-6  # … and no stronger channel left out
        assert fm.image.width > fm.image.height  # 4 tiles a row, 2 rows
    assert hooks_of(lite) == []
    sheet = feature_sheet(lite, "efficientnet_lite0", pic, 64)
    assert sheet.width >= max(m.image.width for m in maps) and sheet.height > sum(m.image.height for m in maps)
