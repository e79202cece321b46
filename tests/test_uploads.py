"""Tests for core.data.uploads: the upload budget setting, saving uploads, leases and LRU eviction."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.data.download import EXTRACTIONS, MAX_ZIP_BYTES, is_complete
from core.data.sources import resolve_source
from core.data.uploads import (
    UPLOADS,
    evict_uploads,
    lease,
    lease_source,
    save_upload,
    upload_of,
)
from core.errors import ConfigError, DataError, StorageError
from core.retrieval.index import open_index
from core.runs.store import RunRecord, active_sources
from core.settings import DEFAULT_UPLOAD_BUDGET, ENV_UPLOAD_BUDGET, Settings, parse_bytes
from tests.helpers import ROOT

UPLOAD_BYTES = 4_000  # what each test upload unpacks to; its zip is a little bigger (stored, not compressed)


def zip_bytes(seed: int, size: int = UPLOAD_BYTES) -> bytes:
    """A distinct zip of two class folders holding ``size`` incompressible bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, cls in enumerate(("a", "b")):
            zf.writestr(f"{cls}/{seed}.bin", os.urandom(size // 2) if i else bytes([seed]) * (size // 2))
    return buf.getvalue()


def budget_settings(tmp_path: Path, uploads_that_fit: int) -> Settings:
    """Settings with a cache of its own and room for that many test uploads (zip and extraction each)."""
    per_upload = len(zip_bytes(0)) + UPLOAD_BYTES
    return Settings(tmp_path / "cache", tmp_path / "runs", upload_budget=per_upload * uploads_that_fit + 100)


def upload(settings: Settings, seed: int, age: float = 0) -> Path:
    """Save and extract a test upload, last used ``age`` seconds ago (an hour ago and more: the oldest)."""
    path = save_upload(zip_bytes(seed), settings)
    assert resolve_source(str(path), settings) == extraction(path) and is_complete(extraction(path))
    stamp = 1_700_000_000 - age
    os.utime(path, (stamp, stamp))
    return path


def extraction(upload_path: Path) -> Path:
    return upload_path.parent.parent / EXTRACTIONS / upload_path.stem


# --------------------------------------------------------------------------------------------- the setting


@pytest.mark.parametrize(
    "text, expected",
    [("2GB", 2 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30), ("1234", 1234), (" 1.5 gb ", 15 * 10**8)],
)
def test_the_upload_budget_is_read_from_the_environment(text, expected):
    s = Settings.from_env({ENV_UPLOAD_BUDGET: text})
    assert s.upload_budget == expected
    assert ENV_UPLOAD_BUDGET in s.describe()


def test_the_upload_budget_defaults_to_room_for_the_largest_upload():
    default = Settings.from_env({}).upload_budget
    assert default == Settings(Path("c"), Path("r")).upload_budget == parse_bytes(DEFAULT_UPLOAD_BUDGET)
    tomllib = pytest.importorskip("tomllib")
    max_upload = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"] * 10**6
    assert max_upload + MAX_ZIP_BYTES <= default  # the biggest zip the app accepts, extracted, fits alone
    assert Settings.from_env({}).describe()[ENV_UPLOAD_BUDGET] == "5 GB"


@pytest.mark.parametrize("text", ["lots", "-1GB", "0", "0.1", "5 parsecs", "GB", "1e9", "2 GB GB"])
def test_a_bad_upload_budget_says_what_to_write(text):
    with pytest.raises(ConfigError, match=rf"{ENV_UPLOAD_BUDGET}=.*is not a size.*'5GB'"):
        Settings.from_env({ENV_UPLOAD_BUDGET: text})


def test_the_app_config_limits_uploads():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == 200  # MB
    assert config["server"]["showEmailPrompt"] is False and config["browser"]["gatherUsageStats"] is False


# --------------------------------------------------------------------------------------------- saving


def test_an_upload_is_stored_once_by_content_and_reused(tmp_path):
    s = budget_settings(tmp_path, 3)
    data = zip_bytes(1)
    first = save_upload(data, s)
    assert first.parent == s.cache_dir / UPLOADS and first.read_bytes() == data and len(first.stem) == 16
    os.utime(first, (1_000_000, 1_000_000))
    inode = first.stat().st_ino
    again = save_upload(data, s)
    assert again == first and again.stat().st_ino == inode  # not written again...
    assert again.stat().st_mtime > 1_000_000  # ...but marked as just used
    assert save_upload(zip_bytes(2), s) != first
    first.write_bytes(data[:10])  # a damaged copy is replaced
    assert save_upload(data, s).read_bytes() == data


def test_a_failed_save_leaves_no_file(tmp_path, monkeypatch):
    s = budget_settings(tmp_path, 3)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageError, match="disk is full"):
        save_upload(zip_bytes(1), s)
    assert list((s.cache_dir / UPLOADS).iterdir()) == []  # neither the zip nor a temporary file


def test_an_upload_over_the_budget_is_refused(tmp_path):
    s = Settings(tmp_path / "cache", tmp_path / "runs", upload_budget=1000)
    with pytest.raises(DataError, match=f"more than the .* kept for uploads \\({ENV_UPLOAD_BUDGET}\\)"):
        save_upload(zip_bytes(1), s)
    assert not (s.cache_dir / UPLOADS).exists()


# --------------------------------------------------------------------------------------------- eviction


def test_the_least_recently_used_upload_goes_first_with_its_extraction(tmp_path):
    s = budget_settings(tmp_path, 2)
    old, middle, new = upload(s, 1, age=300), upload(s, 2, age=200), upload(s, 3, age=100)
    assert all(extraction(p).is_dir() for p in (old, middle, new))
    with lease(old):  # makes its lock file, which eviction removes with the upload
        pass
    os.utime(old, (1_700_000_000 - 300,) * 2)  # the lease marked it as used: make it the oldest again
    assert evict_uploads(s) == [old.resolve()]
    assert not old.exists() and not extraction(old).exists() and not old.with_suffix(".lock").exists()
    assert middle.exists() and extraction(middle).is_dir() and new.exists() and extraction(new).is_dir()
    assert evict_uploads(s) == []  # within the budget now


def test_using_an_upload_again_makes_it_the_most_recent(tmp_path):
    s = budget_settings(tmp_path, 2)
    old, middle, new = upload(s, 1, age=300), upload(s, 2, age=200), upload(s, 3, age=100)
    save_upload(old.read_bytes(), s)  # uploaded again
    with lease(middle):  # read by a run or an index build
        pass
    assert evict_uploads(s) == [new.resolve()]
    assert old.exists() and extraction(old).is_dir() and middle.exists()


def test_kept_uploads_are_never_removed(tmp_path):
    s = budget_settings(tmp_path, 1)
    old, middle, new = upload(s, 1, age=300), upload(s, 2, age=200), upload(s, 3, age=100)
    root = resolve_source(str(old), s)  # the folder a run or a page reads: inside the extraction
    removed = evict_uploads(s, keep=["sample", root, str(new)])
    assert removed == [middle.resolve()]
    assert old.exists() and extraction(old).is_dir() and new.exists()  # over the budget, but both kept
    assert evict_uploads(s, keep=[extraction(old), new]) == []


def test_a_leased_upload_is_not_removed_while_another_process_holds_the_lease(tmp_path):
    s = budget_settings(tmp_path, 2)
    old, middle, new = upload(s, 1, age=300), upload(s, 2, age=200), upload(s, 3, age=100)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from core.data.uploads import lease\n"
         "with lease(sys.argv[1]):\n    print('leased', flush=True)\n    sys.stdin.readline()", str(old)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "leased"
        assert evict_uploads(s) == [middle.resolve()]  # the next least recently used instead
        assert old.exists() and extraction(old).is_dir()
    finally:
        holder.communicate("done\n", timeout=30)
    assert holder.returncode == 0
    assert old.stat().st_mtime > new.stat().st_mtime  # the lease marked it as used
    assert evict_uploads(s, keep=[new, upload(s, 4)]) == [old.resolve()]  # the lease ended: it can go


def test_a_lease_in_this_process_protects_too_and_leases_work_after_an_eviction(tmp_path):
    s = budget_settings(tmp_path, 1)
    old, new = upload(s, 1, age=300), upload(s, 2, age=100)
    with lease_source(str(old), s):
        assert evict_uploads(s, keep=[new]) == []
    assert evict_uploads(s, keep=[new]) == [old.resolve()]
    old = upload(s, 1, age=300)  # uploaded again: a fresh lock file
    with lease_source(resolve_source(str(old), s), s):
        assert evict_uploads(s, keep=[new]) == []
    assert old.exists()


def test_a_search_index_build_holds_a_lease_on_an_uploaded_dataset(tmp_path, tiny_folder):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(tiny_folder.rglob("*.jpg"))[::4]:
            zf.write(f, f"photos/{f.relative_to(tiny_folder)}")
    s = Settings(tmp_path / "cache", tmp_path / "runs", upload_budget=len(buf.getvalue()))  # less than it unpacks to
    zip_path = save_upload(buf.getvalue(), s)
    root = resolve_source(str(zip_path), s)
    assert root.name == "photos"
    evicted = []
    open_index(root, "l1", settings=s, on_progress=lambda *_: evicted.extend(evict_uploads(s)))
    assert evicted == [] and zip_path.exists()  # over the budget, but in use while the index was built
    assert evict_uploads(s) == [zip_path.resolve()] and not root.exists()


# --------------------------------------------------------------------------------------------- helpers


def test_active_sources_are_those_of_queued_and_running_runs():
    def run(status, source="x.zip"):
        return RunRecord(run_id=status, dir=Path(status), status=status, config={"data": {"source": source}})

    runs = [run("queued", "q.zip"), run("running", "r.zip"), run("finished"), run("failed"), run("interrupted")]
    runs.append(RunRecord(run_id="c", dir=Path("c"), status="corrupt"))
    assert active_sources(runs) == ["q.zip", "r.zip"]


def test_only_uploads_are_leased(tmp_path):
    s = budget_settings(tmp_path, 2)
    for other in ("sample", "flowers", tmp_path, tmp_path / "elsewhere.zip", s.cache_dir / EXTRACTIONS):
        assert upload_of(other, s) is None
    zip_path = s.cache_dir / UPLOADS / "0123456789abcdef.zip"
    assert upload_of(s.cache_dir / EXTRACTIONS / "0123456789abcdef" / "photos", s) == zip_path.resolve()
    with lease_source("sample", s):
        assert not (s.cache_dir / UPLOADS).exists()  # nothing taken, nothing made
