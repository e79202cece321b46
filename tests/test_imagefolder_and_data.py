"""Scanning ImageFolder layouts, the decoded-tensor cache, and the stratified split."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import tensor_cache
from core.data.decode import ImageDecodeError, decode_image
from core.data.imagefolder import scan_image_folder
from core.data.sources import resolve_source
from core.data.splits import limit_per_class, stratified_split
from core.data.tensor_cache import load_images
from core.errors import DataError
from core.training.config import DataConfig
from core.training.dataset import prepare_data


def _png(path: Path, color=(200, 30, 30), size=(20, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_scan_lists_classes_and_ignores_hidden_and_non_images(tmp_path):
    _png(tmp_path / "b_cls" / "1.png")
    _png(tmp_path / "b_cls" / "nested" / "2.png")
    _png(tmp_path / "a_cls" / "3.png")
    (tmp_path / "a_cls" / "notes.txt").write_text("not an image")
    _png(tmp_path / "a_cls" / ".hidden.png")
    _png(tmp_path / ".git" / "x.png")
    (tmp_path / "empty_cls").mkdir()
    listing = scan_image_folder(tmp_path)
    assert listing.classes == ("a_cls", "b_cls")
    assert listing.files == ("a_cls/3.png", "b_cls/1.png", "b_cls/nested/2.png")
    assert listing.labels == (0, 1, 1)
    assert listing.counts() == {"a_cls": 1, "b_cls": 2}


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: None, "not found"),
        (lambda p: p.mkdir(), "holds nothing"),
        (lambda p: _png(p / "only" / "1.png"), r"holds 1 sub-folder with images \(only, 1 image\)"),
        (lambda p: (p.parent.mkdir(exist_ok=True), p.write_text("x")), "Not a folder"),
    ],
)
def test_scan_bad_folders_give_clear_errors(tmp_path, make, words):
    target = tmp_path / "data"
    make(target)
    with pytest.raises(DataError, match=words):
        scan_image_folder(target)


def test_a_class_folder_given_instead_of_its_parent_says_what_it_holds(tmp_path):
    for i in range(3):
        _png(tmp_path / "flower_photos" / "daisy" / f"{i}.png")
    _png(tmp_path / "flower_photos" / "roses" / "0.png")
    with pytest.raises(DataError) as e:  # images loose in the folder: the class folder itself was chosen
        scan_image_folder(tmp_path / "flower_photos" / "daisy")
    message = str(e.value)
    assert "holds 3 images directly, in no class sub-folder" in message
    assert "choose its parent, which should hold one sub-folder per class" in message
    assert "No images found" not in message


def test_a_folder_with_one_class_or_the_dataset_one_level_down_says_what_to_choose(tmp_path):
    for i in range(3):
        _png(tmp_path / "one" / "daisy" / f"{i}.png")
    with pytest.raises(DataError) as e:
        scan_image_folder(tmp_path / "one")
    assert "holds 1 sub-folder with images (daisy, 3 images)" in str(e.value)
    assert "needs at least 2 classes" in str(e.value) and "Choose its parent" in str(e.value)

    for cls in ("daisy", "roses"):
        _png(tmp_path / "above" / "flower_photos" / cls / "0.png")
    with pytest.raises(DataError) as e:
        scan_image_folder(tmp_path / "above")
    assert "(flower_photos, 2 images), whose own 2 sub-folders (daisy, roses) look like the classes" in str(e.value)
    assert "Choose flower_photos itself" in str(e.value)


def test_a_folder_without_images_says_what_it_holds(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds 2 sub-folders \(a, b\) but no images"):
        scan_image_folder(tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds only 1 file that are not images"):
        scan_image_folder(tmp_path / "e")


def test_a_zip_of_one_class_is_named_as_the_user_knows_it_not_by_its_cache_path(tmp_path, settings):
    import shutil

    for i in range(2):
        _png(tmp_path / "src" / "daisy" / f"{i}.png")
    archive = shutil.make_archive(str(tmp_path / "upload"), "zip", root_dir=tmp_path / "src")
    root = resolve_source(archive, settings, shown_as="daisy.zip")
    with pytest.raises(DataError) as e:
        scan_image_folder(root, shown_as="daisy.zip")
    message = str(e.value)
    assert message.startswith("'daisy.zip' holds 1 sub-folder with images (daisy, 2 images)")
    assert "Zip its parent instead" in message
    assert str(settings.cache_dir) not in message
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError) as e:
        resolve_source(str(tmp_path / "bad.zip"), settings, shown_as="my photos.zip")
    assert "'my photos.zip' is not a valid .zip file" in str(e.value)


def test_decode_respects_exif_rotation(tmp_path):
    # a 40x20 image (wide) whose EXIF says "rotate 90°": decoded as tall, i.e. the top row becomes a column
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    path = tmp_path / "r.jpg"
    im.save(path, exif=exif, quality=95)
    out = decode_image(path, 16)
    assert out.shape == (16, 16, 3)
    top, bottom = out[:4].mean(axis=(0, 1)), out[-4:].mean(axis=(0, 1))
    assert top[0] > 150 and bottom[0] < 100  # red moved from the left to the top


def test_decode_rejects_garbage_truncated_and_huge(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageDecodeError, match="not in an image format"):
        decode_image(tmp_path / "junk.jpg", 16)
    good = _png(tmp_path / "ok.png", size=(64, 64))
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageDecodeError):
        decode_image(tmp_path / "trunc.png", 16)
    Image.new("1", (12000, 10000)).save(tmp_path / "huge.png")  # 120 Mpx, tiny file
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(tmp_path / "huge.png", 16)


def test_unreadable_files_are_skipped_and_counted(tmp_path, settings):
    for i in range(4):
        _png(tmp_path / "d" / "a" / f"{i}.png", (10, 10, 10))
        _png(tmp_path / "d" / "b" / f"{i}.png", (250, 250, 250))
    (tmp_path / "d" / "a" / "broken.jpg").write_bytes(b"\xff\xd8 garbage")
    listing = scan_image_folder(tmp_path / "d")
    dec = load_images(listing.root, listing.classes, listing.files, listing.labels, 16, settings.cache_dir)
    assert len(dec) == 8 and dec.skipped == ("a/broken.jpg",)
    assert dec.images.shape == (8, 3, 16, 16) and dec.images.dtype.is_floating_point is False


def test_decode_cache_is_reused_and_invalidated_when_a_file_changes(tmp_path, settings, monkeypatch):
    root = tmp_path / "d"
    for i in range(3):
        _png(root / "a" / f"{i}.png", (10, 10, 10))
        _png(root / "b" / f"{i}.png", (200, 200, 200))
    calls = []
    real = tensor_cache.decode_image
    monkeypatch.setattr(tensor_cache, "decode_image", lambda p, s: calls.append(p) or real(p, s))

    def load():
        lst = scan_image_folder(root)
        return load_images(root, lst.classes, lst.files, lst.labels, 16, settings.cache_dir)

    first = load()
    assert len(calls) == 6
    tensor_cache.clear_memory_cache()  # as after a restart: only the disk cache is left
    second = load()
    assert len(calls) == 6 and second.images.equal(first.images)
    _png(root / "a" / "0.png", (255, 0, 0))  # changed content (and mtime)
    os.utime(root / "a" / "0.png", ns=(1, 1))
    third = load()
    assert len(calls) == 12
    assert not third.images.equal(first.images)


def test_stratified_split_proportions_disjoint_and_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    s = stratified_split(labels, 0.1, 0.1, seed=1)
    all_idx = s["train"] + s["val"] + s["test"]
    assert sorted(all_idx) == list(range(100))
    for split, expect in (("val", {0: 5, 1: 3, 2: 2}), ("test", {0: 5, 1: 3, 2: 2})):
        assert Counter(labels[i] for i in s[split]) == expect
    assert stratified_split(labels, 0.1, 0.1, seed=1) == s
    assert stratified_split(labels, 0.1, 0.1, seed=2) != s


def test_limit_per_class_is_a_seeded_subset(tiny_folder):
    listing = scan_image_folder(tiny_folder)
    files, labels = limit_per_class(listing, 5, seed=0)
    assert Counter(labels) == {c: 5 for c in range(5)}
    assert set(files) <= set(listing.files)
    assert limit_per_class(listing, 5, seed=0) == (files, labels)
    assert limit_per_class(listing, 5, seed=1) != (files, labels)


def test_prepare_data_builds_a_manifest_of_its_splits(tiny_folder, settings):
    data = prepare_data(DataConfig(source=str(tiny_folder), img_size=32), settings)
    m = data.manifest
    assert m["classes"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert {s: len(v) for s, v in m["splits"].items()} == {"train": 60, "val": 10, "test": 10}
    for split, tensors in data.splits.items():
        assert [lab for _, lab in m["splits"][split]] == tensors.labels.tolist()
        assert tensors.images.shape[1:] == (3, 32, 32)
    test_files = {f for f, _ in m["splits"]["test"]}
    assert not test_files & {f for f, _ in m["splits"]["train"]}


def test_resolve_source_handles_sample_zip_and_bad_paths(tmp_path, settings, tiny_folder):
    import shutil

    assert scan_image_folder(resolve_source("sample", settings)).classes[0] == "daisy"
    archive = shutil.make_archive(str(tmp_path / "flowers"), "zip", root_dir=tiny_folder.parent, base_dir="data")
    root = resolve_source(archive, settings)
    assert scan_image_folder(root).classes == scan_image_folder(tiny_folder).classes
    with pytest.raises(DataError, match="not found"):
        resolve_source(str(tmp_path / "nope"), settings)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        resolve_source(str(tmp_path / "file.txt"), settings)


def test_a_file_that_cannot_be_read_gets_a_message_naming_it(tmp_path, monkeypatch):
    for cls in ("a", "b"):
        _png(tmp_path / "d" / cls / "0.png", (10, 10, 10))
    locked = _png(tmp_path / "d" / "b" / "locked.png")
    real = Path.is_file

    def is_file(self):  # what stat does on /proc/1/cwd under "/", even for root
        if self == locked:
            raise PermissionError(13, "Permission denied", str(locked))
        return real(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    with pytest.raises(DataError, match=rf"Cannot read {locked} \(Permission denied\) while looking for images"):
        scan_image_folder(tmp_path / "d")


def _png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG that declares its size and mode but carries almost no pixels: the header of a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decoding_is_refused_by_the_memory_it_would_take_before_any_pixel_is_read(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(9000, 9000, 16, 6))  # 81 Mpx, under the pixel cap; RGBA: over 1 GB to decode
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageDecodeError, match=r"too large to decode \(9000x9000 pixels in mode RGBA would take"):
        decode_image(bomb, 16)
    photo = tmp_path / "photo.png"  # a 20-megapixel photo's header passes; its missing pixels are the problem
    photo.write_bytes(_png_header(5000, 4000, 8, 2))
    with pytest.raises(ImageDecodeError, match="damaged or cut short"):
        decode_image(photo, 16)
