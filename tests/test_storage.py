"""Writing where it cannot: a file where the runs folder should be, a full disk. A clear message naming the
path (exit 2 in the CLI), and no half-written or temporary file left behind (issue 13, section 2)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from core.cli import main
from core.errors import StorageError
from core.files import atomic_write, write_json_atomic


def test_a_file_where_the_runs_folder_should_be_gets_a_message_and_exit_2(tmp_path, tiny_folder, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    argv = ["train", "--data", str(tiny_folder), "--regime", "transfer", "--backbone", "efficientnet_lite0"]
    assert main([*argv, "--img-size", "32", "--epochs", "1", "--runs-dir", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot write {runs}") and "a file stands where a folder should be" in err
    assert "Traceback" not in err and runs.read_text() == "not a folder"


def test_a_full_disk_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"status": "finished"})
    real_replace = os.replace

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageError, match=rf"Cannot write {target} \(No space left on device\): the disk is full"):
        write_json_atomic(target, {"status": "interrupted"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no .tmp file left behind
    assert target.read_text().count("finished") == 1  # the old file, whole


def test_a_failed_cache_write_is_still_an_oserror_for_code_that_shrugs_it_off(tmp_path):
    (tmp_path / "cache").write_text("a file")
    with pytest.raises(OSError), atomic_write(tmp_path / "cache" / "x.bin") as f:
        f.write(b"never")


def test_temporary_files_of_killed_writes_are_removed_at_start(settings, capsys):
    run = settings.runs_dir / "20260101-000000-transfer-x"
    index = settings.cache_dir / "indexes" / "abc"
    for folder in (run, index):
        folder.mkdir(parents=True, exist_ok=True)
    stale = [run / ".summary.json.tmp123-456", index / ".l1-x.npz.tmp9-9"]
    fresh = run / ".best.pt.tmp777-1"  # a write in progress right now
    for path in (*stale, fresh):
        path.write_bytes(b"half")
    for path in stale:
        os.utime(path, (1, 1))
    (run / "summary.json").write_text("{}")
    os.utime(run / "summary.json", (1, 1))  # an old file that is not a temporary one stays
    assert main(["settings"]) == 0  # any command cleans up first
    assert not any(p.exists() for p in stale) and fresh.exists() and (run / "summary.json").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB tmpfs (root only; skips where mounting is not allowed), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


def test_training_on_a_full_disk_says_so_and_leaves_no_temporary_file(small_disk, tiny_folder, settings, capsys):
    runs = small_disk / "runs"
    argv = ["train", "--data", str(tiny_folder), "--regime", "full", "--backbone", "efficientnet_lite0"]
    assert main([*argv, "--img-size", "32", "--epochs", "1", "--runs-dir", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the disk is full" in err and str(runs) in err, err
    assert "Traceback" not in err and _leftovers(small_disk) == []


def test_a_read_only_runs_folder_says_so(small_disk, tiny_folder, settings, capsys):
    runs = small_disk / "runs"
    runs.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)  # read-only even for root
    argv = ["train", "--data", str(tiny_folder), "--regime", "transfer", "--backbone", "efficientnet_lite0"]
    assert main([*argv, "--img-size", "32", "--epochs", "1", "--runs-dir", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot write {runs}") and "read-only" in err, err
    assert "Traceback" not in err
