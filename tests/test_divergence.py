"""A run whose loss stops being a number fails with a clear reason, keeps the epochs before it, and every file it
leaves is strict JSON (issue 13: 'a NaN validation loss ends as finished with no best.pt and NaN in JSON')."""

from __future__ import annotations

import json

import pytest
import torch

from core.cli import main
from core.errors import TrainingDiverged
from core.files import write_json_atomic
from core.runs.store import RunStore, load_run
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.train import train_run


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def loss_turns_nan_after(monkeypatch):
    """From the n-th cross-entropy on (training batches and evaluation alike), the loss is NaN: what a far too
    high learning rate does, deterministically."""

    def install(n: int):
        real = torch.nn.functional.cross_entropy
        calls = [0]

        def poisoned(*args, **kwargs):
            calls[0] += 1
            loss = real(*args, **kwargs)
            return loss * float("nan") if calls[0] > n else loss

        monkeypatch.setattr(torch.nn.functional, "cross_entropy", poisoned)

    return install


@pytest.mark.slow
def test_a_diverging_run_fails_with_the_reason_and_keeps_the_epochs_before(tiny_folder, settings, loss_turns_nan_after):
    cfg = RunConfig(
        data=DataConfig(source=str(tiny_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="scratch"),
        train=TrainConfig(epochs=4, lr=1e-3, batch_size=32),
    )
    batches = 2  # 64 training images of the 80, 32 a batch
    loss_turns_nan_after(batches + 1)  # epoch 1 (its batches and its validation) is fine; epoch 2 is not
    with pytest.raises(TrainingDiverged, match=r"(?s)epoch 2.*learning rate"):
        train_run(cfg, settings)
    [run] = RunStore(settings.runs_dir).list_runs()
    assert run.status == "failed" and "diverged" in run.error
    assert [m["epoch"] for m in run.metrics] == [1] and run.has_checkpoint  # epoch 1 kept, and its weights
    for path in run.dir.iterdir():  # every file the run wrote is strict JSON
        if path.suffix == ".json":
            _strict(path.read_text())
        elif path.suffix == ".jsonl":
            [_strict(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_the_cli_says_the_run_diverged_and_exits_2(tiny_folder, settings, loss_turns_nan_after, capsys):
    loss_turns_nan_after(0)
    argv = ["train", "--data", str(tiny_folder), "--regime", "scratch", "--backbone", "efficientnet_lite0"]
    assert main([*argv, "--img-size", "32", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The training loss became nan at epoch 1, batch 1") and "Traceback" not in err
    [run] = RunStore(settings.runs_dir).list_runs()
    assert run.status == "failed" and not run.has_checkpoint and load_run(run.dir).metrics == []


def test_run_files_are_strict_json_even_when_a_value_is_not_a_number(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"loss": float("nan"), "best": [1.5, float("inf"), -float("inf")]})
    assert _strict((tmp_path / "x.json").read_text()) == {"loss": None, "best": [1.5, None, None]}
