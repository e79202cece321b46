"""The Search page's helpers in ``core.app.search``, tested without the page."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image

from core.app.search import class_key, deep_sources, file_key, files_by_class, framed_thumbnail, root_tag
from core.data.imagefolder import ImageFolderListing, scan_image_folder
from core.models.backbones import BACKBONES
from core.runs.store import RunStore

GREEN, BLUE = (44, 160, 44), (20, 40, 220)


def _weights(monkeypatch, **where) -> None:
    """Say where each backbone's ImageNet weights are on this machine (None: not here)."""
    for name, source in where.items():
        monkeypatch.setitem(BACKBONES, name, dataclasses.replace(BACKBONES[name], weights_source=lambda s, w=source: w))


def _fake_run(settings, status: str, checkpoint: bool, seed: int) -> str:
    """A run folder written through the store's own writer (no training): ``status`` and, optionally, a
    checkpoint. ``running`` leaves it running in this (live) process."""
    writer = RunStore(settings.runs_dir).create("full", "efficientnet_lite0")
    model = {"regime": "full", "backbone": "efficientnet_lite0"}
    writer.write_config({"data": {"source": "sample", "img_size": 32}, "model": model, "train": {"seed": seed}})
    if checkpoint:
        writer.save_checkpoint({})
    if status != "running":
        writer.write_summary({"status": status})
    return writer.run_id


def test_deep_sources_offer_offline_imagenet_backbones_and_finished_runs_with_a_checkpoint(settings, monkeypatch):
    _weights(monkeypatch, resnet18=None)  # as on a machine without ResNet18's weights (EfficientNet's ship)
    done = _fake_run(settings, "finished", checkpoint=True, seed=7)
    _fake_run(settings, "finished", checkpoint=False, seed=8)  # nothing to embed with
    _fake_run(settings, "interrupted", checkpoint=True, seed=9)
    _fake_run(settings, "running", checkpoint=True, seed=10)
    assert RunStore(settings.runs_dir).get(done).has_checkpoint

    sources = deep_sources(settings)
    imagenet = [k for k in sources if k.startswith("imagenet:")]
    runs = [k for k in sources if k.startswith("run:")]
    assert imagenet == ["imagenet:efficientnet_lite0"]
    label, cfg = sources["imagenet:efficientnet_lite0"]
    assert label == "ImageNet EfficientNet-Lite0 (pretrained)" and cfg.backbone == "efficientnet_lite0" and not cfg.run
    assert runs == [f"run:{done}"]  # not the unfinished ones, nor the one without a checkpoint
    label, cfg = sources[f"run:{done}"]
    assert label.startswith("Fine-tuned run: ") and "seed 7" in label
    assert cfg.run == str(settings.runs_dir / done)
    assert imagenet + runs == list(sources)  # ImageNet first: the page's default

    _weights(monkeypatch, resnet18="torch hub cache")
    assert [k for k in deep_sources(settings) if k.startswith("imagenet:")] == [
        "imagenet:resnet18",
        "imagenet:efficientnet_lite0",
    ]
    assert deep_sources(settings)["imagenet:resnet18"][0] == "ImageNet ResNet18 (pretrained)"


def test_without_any_imagenet_weights_the_default_backbone_offers_to_download(settings, monkeypatch):
    _weights(monkeypatch, resnet18=None, efficientnet_lite0=None)
    sources = deep_sources(settings)
    assert list(sources) == ["imagenet:resnet18"]
    label, cfg = sources["imagenet:resnet18"]
    assert label.endswith("(downloads weights)") and cfg.backbone == "resnet18"


def test_files_by_class_keeps_every_file_under_its_class(tiny_folder):
    listing = scan_image_folder(tiny_folder)
    by_class = files_by_class(tiny_folder)
    assert list(by_class) == list(listing.classes)
    assert sorted(f for files in by_class.values() for f in files) == sorted(listing.files)
    for cls, files in by_class.items():
        assert len(files) == 16 and all(f.startswith(f"{cls}/") for f in files)
        assert all((tiny_folder / f).is_file() for f in files)
    assert files_by_class(listing) == by_class == files_by_class(str(tiny_folder))


def test_files_by_class_lists_a_class_without_files():
    listing = ImageFolderListing(
        root=None, classes=("a", "b", "c"), files=("c/1.jpg", "a/2.jpg", "c/3.jpg"), labels=(2, 0, 2)
    )
    assert files_by_class(listing) == {"a": ["a/2.jpg"], "b": [], "c": ["c/1.jpg", "c/3.jpg"]}


def _near(pixel, colour, tol=30) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour))


@pytest.mark.parametrize("rotated", [False, True])
def test_framed_thumbnail_is_a_jpeg_of_the_size_asked_with_the_frame_colour_on_its_border(tmp_path, rotated):
    im = Image.new("RGB", (80, 40), BLUE)  # wide; stored with "rotate 90°" it displays tall
    exif = im.getexif()
    if rotated:
        exif[0x0112] = 6
    im.save(tmp_path / "photo.jpg", exif=exif)
    data = framed_thumbnail(tmp_path / "photo.jpg", "#2ca02c", 60, border=6)
    thumb = Image.open(io.BytesIO(data))
    assert thumb.format == "JPEG" and thumb.size == (72, 72)
    rgb = thumb.convert("RGB")
    border = [(x, y) for x in range(72) for y in (1, 70)] + [(x, y) for y in range(72) for x in (1, 70)]
    assert all(_near(rgb.getpixel(p), GREEN) for p in border)
    assert _near(rgb.getpixel((36, 36)), BLUE)  # the photo in the middle...
    # ...padded with white across its short side: above it when wide, beside it when shown tall
    assert _near(rgb.getpixel((36, 10) if not rotated else (10, 36)), (255, 255, 255))
    assert _near(rgb.getpixel((10, 36) if not rotated else (36, 10)), BLUE)


def test_widget_keys_are_per_dataset_folder(tmp_path):
    a, b = tmp_path / "flowers", tmp_path / "other"
    assert root_tag(a) == root_tag(str(a)) and root_tag(a) != root_tag(b)
    assert len(root_tag(a)) == 8 and set(root_tag(a)) <= set("0123456789abcdef")
    assert class_key(a) != class_key(b) and file_key(a, "roses") != file_key(b, "roses")
    assert file_key(a, "roses") != file_key(a, "tulips")
    assert root_tag(a) in class_key(a) and root_tag(a) in file_key(a, "roses")
