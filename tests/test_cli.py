"""``python -m core``: the JSON last line, evaluate, and clear errors (exit 2, no traceback) on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core.cli import main
from tests.helpers import ROOT, SHARED_FLOWERS, needs_shared_flowers


def run_cli(*args, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_then_evaluate_from_the_command_line(tiny_folder, settings, tmp_path):
    import shutil

    data = shutil.copytree(tiny_folder, tmp_path / "data")
    (data / "roses" / "broken.jpg").write_bytes(b"not a jpeg at all")  # skipped and counted, not fatal
    p = run_cli(
        "train",
        "--data",
        data,
        "--regime",
        "transfer",
        "--backbone",
        "efficientnet_lite0",
        "--epochs",
        "2",
        "--img-size",
        "48",
        "--lr",
        "1e-3",
        "--seed",
        "1",
    )
    assert p.returncode == 0, p.stderr
    s = last_json(p.stdout)
    for key in (
        "run_id",
        "run_dir",
        "regime",
        "backbone",
        "epochs",
        "best_val_acc",
        "test_acc",
        "train_seconds",
        "trainable_params",
    ):
        assert key in s
    assert s["regime"] == "transfer" and s["epochs"] == 2 and s["trainable_params"] == 6405
    assert Path(s["run_dir"]).parent == settings.runs_dir
    assert "epoch 2/2" in p.stderr  # progress is shown, on stderr
    assert "1 unreadable file(s) were skipped" in p.stderr

    e = run_cli("evaluate", s["run_dir"])
    assert e.returncode == 0, e.stderr
    ev = last_json(e.stdout)
    assert ev["n"] == 10 and set(ev["per_class"]) == {"daisy", "dandelion", "roses", "sunflowers", "tulips"}
    assert ev["accuracy"] == pytest.approx(s["test_acc"], abs=0.101)  # bf16 rounding may flip one image
    assert ev["seen_in_training"] == {"train": 0, "val": 0}  # its own test split: never seen

    e = run_cli("evaluate", s["run_dir"], "--data", data)  # the folder it trained on: said to be optimistic
    assert e.returncode == 0, e.stderr
    seen = last_json(e.stdout)["seen_in_training"]
    split = json.loads((Path(s["run_dir"]) / "split.json").read_text())["splits"]
    assert seen == {"train": len(split["train"]), "val": len(split["val"])}
    assert "optimistic" in e.stderr

    r = run_cli("runs")
    assert r.returncode == 0 and last_json(r.stdout)[0]["run_id"] == s["run_id"]


def _one_class(tmp_path):
    (tmp_path / "one" / "daisy").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "daisy" / "a.png")
    return tmp_path / "one"


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--regime", "transfer", "--data", "{tmp}/nope"], "Dataset not found"),
        (["train", "--regime", "transfer", "--data", "{tmp}/empty"], "holds nothing"),
        (["train", "--regime", "transfer", "--data", "{one}"], "needs at least 2 classes"),
        (["train", "--regime", "sideways"], "invalid choice"),
        (["train", "--regime", "scratch", "--epochs", "0"], "must be at least 1"),
        (["train", "--regime", "scratch", "--lr", "abc"], "expected a number"),
        (["train", "--regime", "scratch", "--img-size", "8"], "between 32 and 512"),
        (["train", "--regime", "transfer", "--freeze", "3"], "only applies to the 'finetune' regime"),
        (
            [
                "train",
                "--regime",
                "finetune",
                "--backbone",
                "efficientnet_lite0",
                "--freeze",
                "500",
                "--data",
                "{tiny}",
            ],
            "between 0 and 147",
        ),
        (["train", "--regime", "transfer", "--backbone", "resnet18", "--data", "{tiny}"], "resnet18-f37072fd.pth"),
        (["evaluate", "{tmp}/no-such-run"], "cannot be read"),
        (["train", "--regime", "scratch", "--seed", str(10**30)], "seed must be between 0 and 4,294,967,295"),
        (["train", "--regime", "scratch", "--threads", "100000"], "Threads must be between 1 and 256"),
    ],
)
def test_bad_input_gives_a_clear_message_and_exit_2(tmp_path, settings, tiny_folder, monkeypatch, capsys, args, words):
    """In this process (what ``python -m core`` runs, minus its start-up): any exception other than a clean
    exit 2 would escape ``main`` and fail the test; the subprocess test below checks the process itself."""
    (tmp_path / "empty").mkdir()
    fill = {"tmp": tmp_path, "one": _one_class(tmp_path), "tiny": tiny_folder}
    monkeypatch.setenv("TRANSFERLAB_RESNET18_WEIGHTS", str(tmp_path / "absent.pth"))
    try:
        code = main([a.format(**fill) for a in args])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert words in err
    assert not settings.runs_dir.exists() or not any(settings.runs_dir.iterdir())  # nothing half-made


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_python_dash_m_core_exits_2_without_a_traceback(tmp_path, settings):
    for args, words in (
        (["train", "--regime", "transfer", "--data", tmp_path / "nope"], "Dataset not found"),  # a TransferLabError
        (["train", "--regime", "scratch", "--epochs", "0"], "must be at least 1"),  # an argparse error
    ):
        p = run_cli(*args)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert words in p.stderr and "Traceback" not in p.stderr
    assert not settings.runs_dir.exists() or not any(settings.runs_dir.iterdir())


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.timeout(300)
@needs_shared_flowers()
def test_real_flowers_transfer_learns(settings):
    # transfer's own recipe (its head trained to convergence on cached features), at a small size and subset
    p = run_cli(
        "train",
        "--data",
        SHARED_FLOWERS,
        "--regime",
        "transfer",
        "--backbone",
        "efficientnet_lite0",
        "--img-size",
        "96",
        "--limit-per-class",
        "40",
        "--quiet",
    )
    assert p.returncode == 0, p.stderr
    s = last_json(p.stdout)
    assert s["test_acc"] >= 0.6, s  # 5 classes: chance is 0.2
