"""One damaged run folder never breaks anything else (issue 13, part 1).

A good run is trained once; each test copies it next to a copy damaged one way (wrong-shape or truncated JSON,
an empty or garbage checkpoint, a torn metrics line, a missing split) and checks that listing, the runs table,
the Train and Compare pages and ``python -m core runs`` still work and show the damaged run as *corrupt* with
its reason, and that ``python -m core evaluate`` on it ends with a one-paragraph message and exit status 2.
"""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.runs.compare import epoch_metrics, runs_table
from core.runs.store import RunStore, load_run
from core.settings import ENV_RUNS_DIR
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.train import train_run
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # every test here opens pages or trains once per module


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, session_cache, tiny_folder):
    from core.settings import Settings

    settings = Settings(cache_dir=session_cache, runs_dir=tmp_path_factory.mktemp("damaged") / "runs")
    cfg = RunConfig(
        data=DataConfig(source=str(tiny_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="transfer"),
        train=TrainConfig(epochs=3, lr=1e-3),
        group="g-good",
    )
    return train_run(cfg, settings)["run_dir"]


def _store_with(good_run, settings, damage) -> str:
    """The good run and a copy of it (its id sorts first: the newest), damaged by ``damage(folder)``."""
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    good = shutil.copytree(good_run, settings.runs_dir / "20000101-000000-transfer-good")
    bad = shutil.copytree(good, settings.runs_dir / "29990101-000000-transfer-damaged")
    damage(bad)
    return bad.name


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


WRONG_SHAPE_OR_TORN = {
    "summary.json is a list": _write("summary.json", "[1, 2, 3]"),
    "summary.json is cut short": _write("summary.json", '{"status": "fini'),
    "status.json is a list": lambda f: ((f / "summary.json").unlink(), (f / "status.json").write_text("[1, 2, 3]")),
    "status.json is cut short": lambda f: ((f / "summary.json").unlink(), (f / "status.json").write_text('{"st')),
    "config.json is a list": _write("config.json", "[1]"),
    "config.json is cut short": _write("config.json", '{"data": {"source": "sa'),
    "config.json is empty": _write("config.json", "{}"),
    "config.json sections of the wrong shape": _write("config.json", '{"data": 1, "model": [], "train": "x"}'),
    "metrics.jsonl holds other JSON": _write("metrics.jsonl", '[1, 2]\n"x"\n{"no_epoch": 1}\n'),
}


@pytest.mark.parametrize("damage", list(WRONG_SHAPE_OR_TORN), ids=list(WRONG_SHAPE_OR_TORN))
def test_a_damaged_run_is_listed_as_corrupt_and_the_rest_works(damage, good_run, settings, capsys):
    bad = _store_with(good_run, settings, WRONG_SHAPE_OR_TORN[damage])
    runs = RunStore(settings.runs_dir).list_runs()
    status = {r.run_id: r for r in runs}
    if damage.startswith("metrics"):  # unreadable rows are skipped; the run itself is fine
        assert status[bad].status == "finished" and status[bad].metrics == []
    else:
        assert status[bad].status == "corrupt" and status[bad].error, status[bad]
    assert status["20000101-000000-transfer-good"].status == "finished"

    table = runs_table(runs)
    assert set(table["run"]) == set(status)
    epoch_metrics(runs)

    assert main(["runs", "--runs-dir", str(settings.runs_dir)]) == 0
    listed = {r["run_id"]: r["status"] for r in json.loads(capsys.readouterr().out.splitlines()[-1])}
    assert listed == {r.run_id: r.status for r in runs}


def _garbage_checkpoint(folder):
    (folder / "best.pt").write_bytes(b"not a checkpoint")
    (folder / "predictions.json").unlink()  # the confusion tab then reads the checkpoint


PAGE_DAMAGE = {**WRONG_SHAPE_OR_TORN, "best.pt is garbage": _garbage_checkpoint}


@pytest.mark.parametrize(
    "page", ["app_pages/train.py", "app_pages/compare.py", "app_pages/search.py", "app_pages/look_inside.py"]
)
@pytest.mark.parametrize(
    "damage",
    ["summary.json is a list", "config.json sections of the wrong shape", "metrics.jsonl holds other JSON",
     "best.pt is garbage"],
)  # fmt: skip
def test_pages_work_next_to_a_damaged_run(page, damage, good_run, settings, monkeypatch):
    _store_with(good_run, settings, PAGE_DAMAGE[damage])
    monkeypatch.setenv(ENV_RUNS_DIR, str(settings.runs_dir))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120).run()
    at.session_state["preset"] = "notebook recipe"
    at.switch_page(page).run()
    assert not at.exception, at.exception
    if page.endswith(("compare.py", "look_inside.py")) and damage == "best.pt is garbage":  # said in an error box
        assert any("best.pt cannot be read" in e.value for e in at.error), [e.value for e in at.error]


CHECKPOINTS = {"empty": b"", "garbage": b"not a checkpoint at all", "a list": None}


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_a_damaged_checkpoint_gets_a_message_not_a_traceback(kind, good_run, settings, capsys):
    import torch

    def damage(folder):
        if CHECKPOINTS[kind] is None:
            torch.save([1, 2, 3], folder / "best.pt")
        else:
            (folder / "best.pt").write_bytes(CHECKPOINTS[kind])

    bad = _store_with(good_run, settings, damage)
    (settings.runs_dir / bad / "predictions.json").unlink()  # evaluation must read the checkpoint
    assert main(["evaluate", str(settings.runs_dir / bad)]) == 2
    err = capsys.readouterr().err
    assert "best.pt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    from core.errors import DataError
    from core.runs.evaluate import load_run_model

    with pytest.raises(DataError, match="best.pt"):
        load_run_model(load_run(settings.runs_dir / bad))


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda f: (f / "split.json").unlink(), "split.json"),
        (_write("split.json", '{"root": 1}'), "split.json"),
        (_write("config.json", "{}"), "config.json"),
    ],
    ids=["split.json missing", "split.json of the wrong shape", "config.json empty"],
)
def test_evaluate_on_a_damaged_run_exits_2_with_a_message(damage, says, good_run, settings, capsys):
    bad = _store_with(good_run, settings, damage)
    assert main(["evaluate", str(settings.runs_dir / bad)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.startswith("error: ")


def test_a_torn_line_in_the_middle_of_the_metrics_loses_only_that_line(good_run, settings):
    def tear(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        lines[1] = lines[1][: len(lines[1]) // 2]  # the second epoch's line, cut in the middle
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    bad = _store_with(good_run, settings, tear)
    assert [m["epoch"] for m in load_run(settings.runs_dir / bad).metrics] == [1, 3]


def test_the_checkpoint_is_synced_to_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    import os

    import torch

    from core.runs.store import RunWriter

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    (tmp_path / "run").mkdir()
    RunWriter(tmp_path / "run").save_checkpoint({"w": torch.ones(3)})
    assert [os.path.basename(p).startswith(".best.pt.tmp") for p in synced] == [True]  # synced under its temp name
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["best.pt"]  # then renamed; nothing else left
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["w"].tolist() == [1.0, 1.0, 1.0]
