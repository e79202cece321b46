"""The embedding map (core.explain.embedding_map): it reuses the Search index's features (each photo embedded
once for both), its cache (reuse, staleness, damage), what "neighbours agree" measures, and the hover thumbnails."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from core.data.imagefolder import scan_image_folder
from core.errors import ConfigError
from core.explain import embedding_map as em
from core.explain.embedding_map import cached_map, embedding_map, separation, silhouette, thumbnail_urls
from core.retrieval import index as retrieval_index
from core.retrieval.embedders import DeepEmbedder, EmbedderConfig
from core.retrieval.index import open_index

LITE0 = EmbedderConfig(backbone="efficientnet_lite0", runtime="torch")  # offline weights; no ONNX export to wait for


@pytest.fixture(autouse=True)
def fresh_memory():
    """Nothing kept in memory between tests: disk reuse is what a restart sees."""
    retrieval_index.clear_memory_cache()
    em.clear_memory_cache()
    yield
    retrieval_index.clear_memory_cache()
    em.clear_memory_cache()


@pytest.fixture
def counted(monkeypatch):
    """Counts of photos embedded (the deep network's batches) and of projections computed."""
    counts = {"embedded": 0, "projected": 0}
    embed, project = DeepEmbedder.embed_decoded, em.project

    def counting_embed(self, batch):
        counts["embedded"] += len(batch)
        return embed(self, batch)

    def counting_project(*args, **kwargs):
        counts["projected"] += 1
        return project(*args, **kwargs)

    monkeypatch.setattr(DeepEmbedder, "embed_decoded", counting_embed)
    monkeypatch.setattr(em, "project", counting_project)

    def take() -> dict:
        out = dict(counts)
        counts.update(embedded=0, projected=0)
        return out

    return take


def _copy(tiny_folder, tmp_path):
    """A dataset of its own: nothing cached for it by other tests."""
    root = shutil.copytree(tiny_folder, tmp_path / "flowers")
    return root, scan_image_folder(root, min_classes=1)


def test_map_embeds_each_photo_once_and_is_cached(tiny_folder, tmp_path, settings, counted):
    root, listing = _copy(tiny_folder, tmp_path)
    n = len(listing)
    assert cached_map(root, LITE0, settings, "pca") is None
    assert counted() == {"embedded": 0, "projected": 0}

    pca = embedding_map(root, LITE0, settings, method="pca")
    assert counted() == {"embedded": n, "projected": 1}  # every photo embedded exactly once
    assert sorted(pca.files) == sorted(listing.files) and pca.classes == listing.classes
    assert pca.labels == [f.split("/", 1)[0] for f in pca.files]
    assert pca.xy.shape == (n, 2) and pca.xy.dtype == np.float32 and np.isfinite(pca.xy).all()
    assert pca.method == "pca" and "EfficientNet-Lite0" in pca.description and 0 <= pca.separation <= 1
    frame = pca.as_frame()
    assert list(frame.columns) == ["x", "y", "label", "file"] and frame["file"].tolist() == pca.files

    again = embedding_map(root, LITE0, settings, method="pca")  # from memory
    assert counted() == {"embedded": 0, "projected": 0} and again is pca
    retrieval_index.clear_memory_cache()
    em.clear_memory_cache()
    restarted = embedding_map(root, LITE0, settings, method="pca")  # from disk, as after a restart
    assert counted() == {"embedded": 0, "projected": 0}
    np.testing.assert_array_equal(restarted.xy, pca.xy)
    assert restarted.files == pca.files and restarted.separation == pca.separation
    _, report = open_index(root, "deep", LITE0, settings=settings)  # Search finds the map's features
    assert report.action == "reused" and counted() == {"embedded": 0, "projected": 0}

    em.clear_memory_cache()
    shown = cached_map(root, LITE0, settings, "pca")
    assert shown is not None and shown.method == "pca" and shown.files == pca.files
    np.testing.assert_array_equal(shown.xy, pca.xy)
    assert cached_map(root, LITE0, settings, "umap") is None  # not drawn yet
    assert cached_map(root, EmbedderConfig(backbone="efficientnet_lite0"), settings, "pca") is None  # other features
    assert counted() == {"embedded": 0, "projected": 0}

    new = root / listing.classes[0] / "added.png"  # the dataset changes: the map is stale
    shutil.copy(root / listing.files[-1], new)
    assert cached_map(root, LITE0, settings, "pca") is None and counted() == {"embedded": 0, "projected": 0}
    grown = embedding_map(root, LITE0, settings, method="pca")
    assert counted() == {"embedded": 1, "projected": 1}  # the index's incremental update: the new photo only
    assert len(grown.files) == n + 1 and f"{listing.classes[0]}/added.png" in grown.files
    assert cached_map(root, LITE0, settings, "pca").files == grown.files

    saved = em._map_path(root, LITE0, "pca", settings)
    saved.write_bytes(b"not a map")  # a damaged cache file is drawn again, from the same features
    em.clear_memory_cache()
    assert cached_map(root, LITE0, settings, "pca") is None
    np.testing.assert_array_equal(embedding_map(root, LITE0, settings, method="pca").xy, grown.xy)
    assert counted() == {"embedded": 0, "projected": 1}


@pytest.mark.slow  # umap-learn's import and numba compilation: about 10 s in a fresh process
def test_umap_map_reuses_the_features_and_is_cached(tiny_folder, tmp_path, settings, counted):
    root, listing = _copy(tiny_folder, tmp_path)
    pca = embedding_map(root, LITE0, settings, method="pca")
    counted()
    umap_map = embedding_map(root, LITE0, settings, method="umap")
    assert counted() == {"embedded": 0, "projected": 1}  # the index's vectors, projected once more
    assert umap_map.method == "umap" and umap_map.files == pca.files and umap_map.labels == pca.labels
    assert umap_map.xy.shape == (len(listing), 2) and np.isfinite(umap_map.xy).all()
    assert not np.allclose(umap_map.xy, pca.xy)
    _, report = open_index(root, "deep", LITE0, settings=settings)
    assert report.action == "reused" and counted() == {"embedded": 0, "projected": 0}

    retrieval_index.clear_memory_cache()
    em.clear_memory_cache()
    shown = cached_map(root, LITE0, settings, "umap")
    np.testing.assert_array_equal(shown.xy, umap_map.xy)
    assert embedding_map(root, LITE0, settings, method="umap").separation == umap_map.separation
    assert counted() == {"embedded": 0, "projected": 0}
    em.clear_memory_cache()
    (root / listing.files[0]).unlink()  # a photo goes away: stale; the map is drawn again, nothing embedded
    assert cached_map(root, LITE0, settings, "umap") is None
    fewer = embedding_map(root, LITE0, settings, method="umap")
    assert counted() == {"embedded": 0, "projected": 1} and listing.files[0] not in fewer.files
    assert len(fewer.files) == len(listing) - 1


def test_unknown_method_fails_before_any_work(tiny_folder, settings, counted):
    with pytest.raises(ConfigError, match="umap"):
        embedding_map(tiny_folder, LITE0, settings, method="tsne")
    assert counted() == {"embedded": 0, "projected": 0}


def _clusters(per_class=100, classes=5, seed=0):
    """``classes`` tight Gaussian clusters (sd 0.5) on a circle of radius 10: neighbouring centres are 11.8 apart,
    over 20 standard deviations, so every point's nearest points are its own cluster's."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(classes) / classes
    centres = 10 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + rng.normal(0, 0.5, (len(labels), 2))).astype(np.float32), labels


def test_separation_is_high_for_clusters_and_chance_for_shuffled_labels():
    xy, labels = _clusters()
    assert separation(xy, labels) == 1.0 and silhouette(xy, labels) > 0.9
    names = [f"class {i}" for i in labels]  # class names work as well as numbers
    assert separation(xy, names) == 1.0 and em.chance_level(names) == pytest.approx(0.2)
    shuffled = np.random.default_rng(1).permutation(labels)
    # labels independent of position: a point's neighbours vote for its own label with probability 1/5;
    # over 500 points the share is 0.2 ± 0.018 (one standard deviation)
    assert 0.1 < separation(xy, shuffled) < 0.3
    assert abs(silhouette(xy, shuffled)) < 0.1


def test_separation_breaks_ties_by_the_nearest_vote():
    # with 2 voters, either both name one class or it is a 1-1 tie that the nearer one wins: exactly 1-NN
    rng = np.random.default_rng(2)
    xy, labels = rng.normal(size=(300, 2)), rng.integers(0, 5, 300)
    one = separation(xy, labels, k=1)
    assert separation(xy, labels, k=2) == one and 0 < one < 1
    # 1-NN by hand on a line (no equal distances): only the two c (at 10 and 10.5) find their own class
    line = np.array([[0.0, 0], [1.5, 0], [3.7, 0], [10, 0], [10.5, 0], [12.1, 0]])
    assert separation(line, ["a", "b", "a", "c", "c", "b"], k=1) == pytest.approx(2 / 6)


def _data_url_image(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    assert head == "data:image/jpeg;base64"
    im = Image.open(io.BytesIO(base64.b64decode(data)))
    im.load()
    return im


def test_thumbnails_are_small_jpeg_data_urls(tmp_path):
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 450, 3), dtype=np.uint8)).save(root / "a" / "wide.jpg", quality=90)
    Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(root / "a" / "small.png")
    (root / "a" / "broken.jpg").write_bytes(b"not a photo")
    files = ["a/wide.jpg", "a/small.png", "a/broken.jpg"]
    urls = thumbnail_urls(root, files, px=64)
    wide, small = _data_url_image(urls[0]), _data_url_image(urls[1])
    assert wide.format == small.format == "JPEG"
    assert wide.width == 64 and abs(wide.height - 43) <= 1  # at most 64 a side, the shape kept (450 x 300)
    assert small.size == (20, 40)  # never enlarged
    assert urls[2] == ""  # unreadable: no picture in the tooltip, no failure
    assert thumbnail_urls(root, files, px=64) is urls  # kept in memory
    assert _data_url_image(thumbnail_urls(root, files, px=32)[0]).width == 32
