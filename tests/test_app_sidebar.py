"""The router's sidebar and Home through streamlit's AppTest: the drawn sample said so, data errors in an error box,
the offline box only while it applies, and the dataset and backbone kept in the URL."""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

import core.data.sources
from core.app.jobs import shared_training
from core.data.download import flowers_path, mark_complete
from core.data.sample import SAMPLE_CAVEAT
from tests.helpers import ROOT

APP = str(ROOT / "streamlit_app.py")


def app(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(autouse=True)
def training(settings):
    """The server's training for this test's run store, shut down at the end (the router starts it)."""
    t = shared_training(settings)
    yield t
    t.shutdown()


def test_the_drawn_sample_says_so_in_the_sidebar_and_on_home(settings):
    at = app()
    assert at.sidebar.radio(key="dataset_choice").value == "Built-in sample"
    assert any(SAMPLE_CAVEAT in c.value for c in at.sidebar.caption)
    assert any(SAMPLE_CAVEAT in i.value for i in at.info)  # on Home, beside the thumbnails
    assert "Drawn flowers generated offline" in SAMPLE_CAVEAT
    at.sidebar.radio(key="dataset_choice").set_value("Flowers (real photos)").run()
    assert not any(SAMPLE_CAVEAT in c.value for c in at.sidebar.caption)


def test_a_class_folder_instead_of_its_parent_gets_an_error_box_saying_so(settings, tmp_path, tiny_folder):
    daisy = tmp_path / "flower_photos" / "daisy"
    shutil.copytree(tiny_folder / "daisy", daisy)
    at = app()
    at.sidebar.radio(key="dataset_choice").set_value("Local folder").run()
    at.sidebar.text_input(key="folder_path").input(str(daisy)).run()
    assert not at.exception
    (error,) = at.sidebar.error
    assert "holds 16 images directly, in no class sub-folder" in error.value
    assert "choose its parent, which should hold one sub-folder per class" in error.value


@pytest.fixture
def downloaded_flowers(settings, tiny_folder, monkeypatch):
    """The flowers "download": the tiny dataset copied where the real one goes, marked complete (no network)."""

    def fake_download(cache_dir, on_progress):
        target = flowers_path(cache_dir)
        if not (target / ".complete").exists():
            on_progress(50_000_000, 100_000_000, "downloading flower_photos.tgz")
            shutil.copytree(tiny_folder, target)
            mark_complete(target)
        return target

    monkeypatch.setattr(core.data.sources, "download_flowers", fake_download)
    yield
    shutil.rmtree(flowers_path(settings.cache_dir).parent, ignore_errors=True)  # the cache is the session's


def offline_box(at: AppTest) -> list:
    return [i for i in at.sidebar.info if "Nothing downloaded" in i.value]


def test_the_offline_box_goes_in_the_run_that_downloads_the_flowers(settings, downloaded_flowers):
    at = app()
    assert offline_box(at)  # nothing downloaded yet: it applies
    at.sidebar.radio(key="dataset_choice").set_value("Flowers (real photos)").run()
    assert offline_box(at)
    at.sidebar.button(key="download_flowers").click().run()
    assert not at.exception
    assert any("5 classes, 80 images" in c.value for c in at.sidebar.caption)
    assert not offline_box(at)  # the same run that downloaded them
    at.run()
    assert not offline_box(at)
    assert not offline_box(app())  # and a new session


def test_a_link_restores_the_sidebar_and_a_change_writes_it(settings, tiny_folder):
    at = app(dataset="folder", folder=str(tiny_folder), backbone="resnet18")
    assert at.sidebar.radio(key="dataset_choice").value == "Local folder"
    assert at.sidebar.text_input(key="folder_path").value == str(tiny_folder)
    assert at.sidebar.selectbox(key="backbone_choice").value == "resnet18"
    assert any("5 classes, 80 images" in c.value for c in at.sidebar.caption)
    at.query_params["regimes"] = "transfer"  # a key of another page: left alone

    at.sidebar.radio(key="dataset_choice").set_value("Built-in sample").run()
    assert at.query_params["dataset"] == "sample" and "folder" not in at.query_params
    at.sidebar.selectbox(key="backbone_choice").set_value("efficientnet_lite0").run()
    assert at.query_params["backbone"] == "efficientnet_lite0"
    at.sidebar.radio(key="dataset_choice").set_value("Upload a .zip").run()
    assert "dataset" not in at.query_params  # an upload cannot be shared
    assert at.query_params["regimes"] == "transfer"


def test_a_link_with_unknown_values_or_an_unshared_folder_is_not_followed(settings, tmp_path):
    at = app(dataset="imagenet", backbone="vgg16")
    assert at.sidebar.radio(key="dataset_choice").value == "Built-in sample"
    assert at.sidebar.selectbox(key="backbone_choice").value == "efficientnet_lite0"  # the offline default
    assert any("Ignored from the link: dataset=imagenet, backbone=vgg16" in c.value for c in at.sidebar.caption)
    assert at.query_params["dataset"] == "sample"  # written back as it is now

    at = app(dataset="folder", folder="/etc")
    assert at.sidebar.radio(key="dataset_choice").value == "Local folder"
    assert any("outside the folders this server shares" in e.value for e in at.sidebar.error)
