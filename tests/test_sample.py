"""The built-in sample dataset: layout, determinism, caching, and that a tiny CNN can learn it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.drawing import render_flower
from core.data.flowers import FLOWER_CLASSES
from core.data.sample import ensure_sample, generate_sample
from core.errors import ConfigError


def _digests(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def test_classes_are_the_flower_names():
    assert FLOWER_CLASSES == ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def test_structure(tmp_path):
    calls = []
    root = generate_sample(tmp_path / "s", per_class=3, size=40, seed=1, on_progress=lambda *a: calls.append(a))
    assert root == tmp_path / "s"
    assert sorted(p.name for p in root.iterdir()) == sorted(FLOWER_CLASSES)
    for cls in FLOWER_CLASSES:
        files = sorted((root / cls).iterdir())
        assert [f.name for f in files] == [f"{cls}_{i:04d}.jpg" for i in range(3)]
        for f in files:
            with Image.open(f) as im:
                assert im.format == "JPEG"
                assert im.mode == "RGB"
                assert im.size == (40, 40)
    assert calls[0] == (0, 15, calls[0][2])
    assert calls[-1][:2] == (15, 15)
    assert all(total == 15 for _, total, _ in calls)


def test_render_flower():
    for cls in FLOWER_CLASSES:
        im = render_flower(cls, np.random.default_rng(0), 64)
        assert im.size == (64, 64) and im.mode == "RGB"
        assert np.asarray(im).std() > 10  # not a blank image
    with pytest.raises(ConfigError):
        render_flower("orchids", np.random.default_rng(0), 64)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        generate_sample(tmp_path, per_class=0)
    with pytest.raises(ConfigError):
        generate_sample(tmp_path, size=4)
    with pytest.raises(ConfigError):
        ensure_sample(tmp_path, seed=-1)


def test_deterministic(tmp_path):
    a = _digests(generate_sample(tmp_path / "a", per_class=4, size=64, seed=3))
    b = _digests(generate_sample(tmp_path / "b", per_class=4, size=64, seed=3))
    assert len(a) == 20
    assert a == b


def test_different_seeds_differ(tmp_path):
    a = _digests(generate_sample(tmp_path / "a", per_class=4, size=64, seed=0))
    b = _digests(generate_sample(tmp_path / "b", per_class=4, size=64, seed=1))
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)
    # and images within one class differ from each other
    assert len(set(a.values())) == len(a)


def test_ensure_sample_reuses(tmp_path):
    cache = tmp_path / "cache"
    calls = []
    root = ensure_sample(cache, per_class=3, size=32, seed=0, on_progress=lambda *a: calls.append(a))
    assert root == cache / "sample-v1-3x32-s0"
    assert sum(1 for _ in root.rglob("*.jpg")) == 15
    assert len(calls) > 2
    # only the final folder is left behind, no temporary sibling
    assert [p.name for p in cache.iterdir()] == ["sample-v1-3x32-s0"]
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.jpg")}

    calls.clear()
    again = ensure_sample(cache, per_class=3, size=32, seed=0, on_progress=lambda *a: calls.append(a))
    assert again == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.jpg")} == mtimes
    assert calls == [(15, 15, calls[0][2])]

    # same content as a direct generation
    assert _digests(root) == _digests(generate_sample(tmp_path / "direct", per_class=3, size=32, seed=0))


def test_ensure_sample_repairs_incomplete(tmp_path):
    root = ensure_sample(tmp_path, per_class=2, size=32, seed=5)
    victim = root / "tulips" / "tulips_0001.jpg"
    victim.unlink()
    again = ensure_sample(tmp_path, per_class=2, size=32, seed=5)
    assert again == root
    assert victim.exists()
    assert sum(1 for _ in root.rglob("*.jpg")) == 10


def _images(root, per_class):
    """(class index, uint8 RGB array) of every generated image, class by class."""
    for ci, cls in enumerate(FLOWER_CLASSES):
        for i in range(per_class):
            with Image.open(root / cls / f"{cls}_{i:04d}.jpg") as im:
                yield ci, np.asarray(im.convert("RGB"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tiny_cnn_learns_it(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    torch.set_num_threads(2)

    per_class, n_train = 40, 30
    root = generate_sample(tmp_path, per_class=per_class, size=48, seed=0)
    xs, ys = [], []
    for ci, arr in _images(root, per_class):
        xs.append(arr.astype(np.float32) / 255.0)
        ys.append(ci)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    y = torch.tensor(ys)
    is_train = torch.tensor([i % per_class < n_train for i in range(len(ys))])
    xtr, ytr, xte, yte = x[is_train], y[is_train], x[~is_train], y[~is_train]

    # two conv layers; global max pooling lets it respond to a shape (a disc, a spiral, a cup) anywhere
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, len(FLOWER_CLASSES)),
    )
    epochs, batch = 25, 16
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-3, total_steps=epochs * -(-len(ytr) // batch))
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    for _epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        for b in range(0, len(perm), batch):
            idx = perm[b : b + batch]
            xb = xtr[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            loss_fn(model(xb), ytr[idx]).backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    assert acc >= 0.6, f"held-out accuracy {acc:.2f} (chance 0.20)"


def test_colour_alone_is_not_enough(tmp_path):
    """Nearest neighbour on 64-bin colour histograms stays far below what the CNN above reaches."""
    per_class, n_train = 40, 30
    root = generate_sample(tmp_path, per_class=per_class, size=48, seed=0)
    hists, ys = [], []
    for ci, arr in _images(root, per_class):
        q = arr // 64
        code = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel()
        hists.append(np.bincount(code, minlength=64) / code.size)
        ys.append(ci)
    h, y = np.stack(hists), np.array(ys)
    is_train = np.arange(len(y)) % per_class < n_train
    d = ((h[~is_train][:, None, :] - h[is_train][None, :, :]) ** 2).sum(-1)
    acc = (y[is_train][d.argmin(1)] == y[~is_train]).mean()
    assert acc < 0.6, f"colour histograms alone reach {acc:.2f}"
