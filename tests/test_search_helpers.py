"""The Search page's helpers in ``core.app.search``, tested without the page."""

from __future__ import annotations

import dataclasses
import io

import pytest
from PIL import Image

from core.app.photos import KeptPhoto
from core.app.search import (
    THUMB_SIZES,
    TRAIL_LENGTH,
    QueryTrail,
    build_progress,
    class_key,
    deep_sources,
    default_thumb_size,
    file_key,
    files_by_class,
    framed_thumbnail,
    root_tag,
)
from core.data.imagefolder import ImageFolderListing, scan_image_folder
from core.models.backbones import BACKBONES
from core.progress import Pace, time_left
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
    offline = [f"imagenet:{name}" for name, spec in BACKBONES.items() if spec.offline]  # their weights ship
    assert imagenet == offline and "imagenet:efficientnet_lite0" in offline
    label, cfg = sources["imagenet:efficientnet_lite0"]
    assert label == "ImageNet EfficientNet-Lite0 (pretrained)" and cfg.backbone == "efficientnet_lite0" and not cfg.run
    assert runs == [f"run:{done}"]  # not the unfinished ones, nor the one without a checkpoint
    label, cfg = sources[f"run:{done}"]
    assert label.startswith("Fine-tuned run: ") and "seed 7" in label
    assert cfg.run == str(settings.runs_dir / done)
    assert imagenet + runs == list(sources)  # ImageNet first: the page's default

    _weights(monkeypatch, resnet18="torch hub cache")
    assert [k for k in deep_sources(settings) if k.startswith("imagenet:")] == ["imagenet:resnet18", *offline]
    assert deep_sources(settings)["imagenet:resnet18"][0] == "ImageNet ResNet18 (pretrained)"


def test_without_any_imagenet_weights_the_default_backbone_offers_to_download(settings, monkeypatch):
    _weights(monkeypatch, **{name: None for name in BACKBONES})
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


def test_time_left_is_the_rest_at_the_pace_so_far():
    assert time_left(10, 50, 100) == "00:10"  # half done after 10 s: about 10 s more
    assert time_left(10, 60, 100, initial=20) == "00:10"  # 40 done in 10 s (watching began at 20): 40 left
    assert time_left(30, 25, 100) == "01:30"
    assert time_left(2, 1, 1801) == "1:00:00"  # an hour and more: hours shown
    assert time_left(10, 0, 100) == time_left(0, 5, 100) == time_left(10, 5, None) == ""  # no pace, no total


def test_pace_measures_each_phase_from_its_first_report():
    now = [100.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.time_left(200, 1000, "embedding") == ""  # watching begins mid-way: no pace yet
    now[0] += 10
    assert pace.time_left(400, 1000, "embedding") == "00:30"  # 200 in 10 s, 600 to go
    now[0] += 5
    assert pace.time_left(0, 1000, "building the graph") == ""  # a new phase
    now[0] += 4
    assert pace.time_left(500, 1000, "building the graph") == "00:04"
    now[0] += 1
    assert pace.time_left(100, 1000, "building the graph") == ""  # counts went back: measured afresh


def test_build_progress_is_one_bar_over_the_steps_with_counts_and_time_left():
    fraction, text = build_progress(2, 3, "Cosine pixels", 1200, 2400, "embedding images", "00:10")
    assert fraction == pytest.approx(0.5)  # step 2 of 3, half done: half of the whole
    assert text == "Step 2/3, Cosine pixels: embedding images — 1,200 / 2,400 photos · about 00:10 left in this step"
    assert build_progress(1, 3, "L1 pixels", 0, 2919, "embedding images")[0] == 0.0
    fraction, text = build_progress(3, 3, "Deep features", 2919, 2919, "embedding images", "00:00")
    assert fraction == 1.0 and text.endswith("about 00:00 left")  # the last step's time left is the build's
    fraction, text = build_progress(3, 3, "Deep features", 0, None, "measuring the approximate index's recall")
    assert fraction == pytest.approx(2 / 3)  # no counts: the step has begun, no more
    assert text == "Step 3/3, Deep features: measuring the approximate index's recall"
    assert build_progress(1, 3, "L1 pixels", 5000, 2919, "x")[0] == pytest.approx(1 / 3)  # never past its step


def test_thumbnails_are_larger_by_default_for_a_few_neighbours():
    few, many = THUMB_SIZES[default_thumb_size(8)], THUMB_SIZES[default_thumb_size(9)]
    assert few[0] < many[0] and few[1] > many[1]  # fewer a row, more pixels
    assert default_thumb_size(1) == default_thumb_size(8) and default_thumb_size(24) == default_thumb_size(9)
    per_row, pixels = zip(*THUMB_SIZES.values())
    assert list(per_row) == sorted(per_row, reverse=True) and list(pixels) == sorted(pixels)  # small to large


def test_a_kept_upload_is_searched_on_any_dataset_with_a_note_on_another(tmp_path):
    sample, other = tmp_path / "sample", tmp_path / "other"
    kept = KeptPhoto.upload("rose.jpg", b"photo bytes", sample, "Built-in sample").with_truth("roses")
    assert kept.uploaded and kept.readable() and kept.source().read() == b"photo bytes"
    assert kept.is_from(sample) and kept.is_from(str(sample)) and not kept.is_from(other)
    assert kept.note(sample, ["roses"]) == ""
    assert kept.truth_in(["daisy", "roses"]) == "roses" and kept.truth_in(["daisy"]) is None
    note = kept.note(other, ["daisy", "roses"])
    assert "uploaded while the dataset **Built-in sample** was chosen" in note and "not one of" not in note
    assert "Its class, *roses*, is not one of this dataset's classes." in kept.note(other, ["daisy"])
    assert kept.with_truth("").truth is None and kept.with_truth("").tag == kept.tag
    assert KeptPhoto.upload("rose.jpg", b"other bytes", sample, "x").tag != kept.tag


def test_a_kept_dataset_photo_is_its_file_while_it_is_there(tiny_folder):
    rel = files_by_class(tiny_folder)["tulips"][0]
    kept = KeptPhoto.dataset_photo(tiny_folder, rel, "tulips", "tiny")
    assert not kept.uploaded and kept.source() == tiny_folder / rel and kept.readable()
    assert kept.name == rel.split("/")[-1] and kept.truth == "tulips"
    assert "comes from the dataset **tiny**" in kept.note(tiny_folder.parent, ["tulips"])
    gone = KeptPhoto.dataset_photo(tiny_folder, "tulips/not-there.png", "tulips", "tiny")
    assert not gone.readable() and gone.tag != kept.tag


def _photo(name: str) -> KeptPhoto:
    return KeptPhoto.dataset_photo("/data", f"daisy/{name}", "daisy", "Flowers")


def test_the_query_trail_is_a_breadcrumb_without_repeats():
    a, b, c, d = (_photo(n) for n in "abcd")
    trail = QueryTrail().visit(a)
    assert trail.earlier == () and trail.current == a
    assert trail.visit(a.with_truth("roses")).earlier == ()  # the same photo relabelled is not a new query
    trail = trail.visit(b).visit(c)
    assert trail.earlier == (a, b) and trail.current == c
    assert trail.visit(a).earlier == (b, c)  # back to a photo already on the trail: it moves, no repeat
    back = trail.visit(d).back_to(1)  # a, b, c -> d, then back to b: c and d are dropped
    assert back.earlier == (a,) and back.current == b
    assert trail.back_to(-1).current == b
    many = QueryTrail()
    for i in range(20):
        many = many.visit(_photo(str(i)))
    assert [p.name for p in many.earlier] == [str(i) for i in range(19 - TRAIL_LENGTH, 19)]  # the latest, in order
