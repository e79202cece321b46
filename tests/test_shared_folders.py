"""A student's browser reaches only the folders the teacher shared (issue 13, section 3, first item)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.sources import check_allowed, shared_folders
from core.errors import DataError
from core.settings import ENV_DATA_ROOTS, Settings
from tests.helpers import ROOT


@pytest.fixture
def shared(tmp_path) -> Path:
    folder = tmp_path / "shared"
    (folder / "photos" / "daisy").mkdir(parents=True)
    return folder


@pytest.mark.parametrize("path", ["/", "/etc", "{shared}/..", "{shared}/photos/../../outside", "~"])
def test_paths_outside_the_shared_folders_are_refused(path, shared):
    with pytest.raises(DataError, match=r"outside the folders this server shares .*TRANSFERLAB_DATA_ROOTS"):
        check_allowed(path.format(shared=shared), (shared,))


def test_a_symlink_pointing_outside_is_refused_and_one_inside_is_followed(shared, tmp_path):
    (shared / "escape").symlink_to("/etc")
    (shared / "inside").symlink_to(shared / "photos")
    with pytest.raises(DataError, match="outside the folders"):
        check_allowed(str(shared / "escape"), (shared,))
    assert check_allowed(str(shared / "inside"), (shared,)) == (shared / "photos").resolve()
    assert check_allowed(str(shared / "photos" / "daisy" / ".."), (shared,)) == (shared / "photos").resolve()


def test_what_is_shared_by_default(tmp_path):
    cache = tmp_path / "cache"
    unset = Settings(cache_dir=cache, runs_dir=tmp_path / "runs")
    assert shared_folders(unset, local_only=False) == ()  # students can reach it: only the built-in data
    assert shared_folders(unset, local_only=True) == (Path.home(),)  # the teacher's laptop alone
    env = Settings.from_env({"TRANSFERLAB_DATA_ROOTS": f"{tmp_path / 'a'}:{tmp_path / 'b'}"})
    assert shared_folders(env, local_only=True) == (tmp_path / "a", tmp_path / "b")
    assert shared_folders(Settings.from_env({"TRANSFERLAB_DATA_ROOTS": ""}), local_only=True) == ()
    inside = cache / "sample" / "daisy"  # the app's own datasets are always allowed, and named nowhere
    assert check_allowed(str(inside), (), builtin=(cache,)) == inside.resolve()
    with pytest.raises(DataError, match=r"shares \(none besides the built-in datasets\)"):
        check_allowed("/etc", (), builtin=(cache,))


@pytest.mark.slow
def test_the_sidebar_refuses_a_folder_outside_the_shared_ones(shared, monkeypatch, settings):
    monkeypatch.setenv(ENV_DATA_ROOTS, str(shared))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.sidebar.radio(key="dataset_choice").set_value("Local folder").run()
    assert any(f"Folders inside {shared}" in c.value for c in at.sidebar.caption)
    at.sidebar.text_input(key="folder_path").input("/").run()
    assert not at.exception
    assert any("'/' is outside the folders this server shares" in e.value for e in at.sidebar.error)
    assert at.session_state["dataset"] is None  # nothing listed, nothing shown
