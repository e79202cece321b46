"""The HTML report (core.app.report, ``python -m core report``, Compare's button) and the reproduce commands.

Runs are really trained (tiny images, one epoch); the report must be valid HTML holding every run, its command and
its confusion matrix, escape what comes from files, and load nothing from the network.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from html.parser import HTMLParser

import pytest

from core.app.report import build_report, report_html
from core.cli import build_parser, main
from core.cli.training import config_from_args
from core.runs.predictions import load_predictions
from core.runs.store import load_run
from core.settings import ENV_CACHE_DIR, ENV_RUNS_DIR, Settings
from core.training.command import reproduce_command
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig, apply_preset, regime_defaults
from core.training.train import train_run
from tests.helpers import noise_folder, open_app_page

NOTE = '<script>alert("note")</script> & more'
ODD_CLASS = "<b>odd"  # a folder name: no slash
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class TagChecker(HTMLParser):
    """Every opened (non-void) tag closed in order; the tags seen, and the <script> tags' attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.seen, self.errors, self.scripts = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        self.seen.add(tag)
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_html(text: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert text.startswith("<!DOCTYPE html>")
    assert not checker.errors and not checker.stack, (checker.errors[:5], checker.stack)
    assert {"html", "head", "body", "title"} <= checker.seen
    return checker


def assert_offline(text: str, checker: TagChecker) -> None:
    assert not [s for s in checker.scripts if "src" in s], "a <script src> needs the network"
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"@import\s+url\(\s*[\"']?(https?:)?//", text, re.I)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, session_cache, tiny_folder):
    """Transfer and finetune on the tiny sample (one with a note that holds a <script>), transfer on a folder
    with an odd class name, and a run whose process died after its epoch (no summary, no predictions)."""
    settings = Settings(cache_dir=session_cache, runs_dir=tmp_path_factory.mktemp("report") / "runs")
    odd = noise_folder(tmp_path_factory.mktemp("odd") / "data", per_class=6, classes=(ODD_CLASS, "b&c", "c"))
    dirs = []
    for source, regime, note in ((tiny_folder, "transfer", NOTE), (tiny_folder, "finetune", ""), (odd, "transfer", "")):
        cfg = RunConfig(
            data=DataConfig(source=str(source), img_size=32),
            model=ModelConfig(backbone="efficientnet_lite0", regime=regime),
            train=TrainConfig(epochs=1, lr=1e-3, num_threads=1),
            note=note,
        )
        dirs.append(train_run(cfg, settings)["run_dir"])
    dead = settings.runs_dir / "20000101-000000-transfer-efficientnet_lite0-dead"
    shutil.copytree(dirs[0], dead)
    for name in ("summary.json", "predictions.json"):
        (dead / name).unlink()
    return {"settings": settings, "dirs": [*map(str, dirs), str(dead)], "dead": dead.name}


@pytest.mark.slow  # trains the runs once (about 10 s)
def test_the_report_is_valid_offline_html_with_every_run_its_command_and_matrix(runs):
    records = [load_run(d) for d in runs["dirs"]]
    text = build_report(records)
    assert_offline(text, check_html(text))
    for r in records:
        assert r.run_id in text
        command = reproduce_command(r.config).splitlines()[0]
        assert command.startswith("python -m core train ")
        assert command.replace("&", "&amp;").replace("'", "&#x27;").replace('"', "&quot;") in text
    with_predictions = [r for r in records if load_predictions(r.dir) is not None]
    assert len(with_predictions) == len(records) - 1  # all but the dead run
    assert text.count("<h4>Confusion matrix</h4>") == len(with_predictions)
    # plotly.js once, then one figure per confusion matrix and the curves
    assert text.count("Plotly.newPlot(") == len(with_predictions) + 1
    # the machine each run recorded
    resolved = records[0].config["resolved"]
    assert f"<td>{resolved['isa']}</td>" in text and f"<td>{records[0].summary['setup']['precision']}</td>" in text


@pytest.mark.slow  # trains the runs once (about 10 s)
def test_what_comes_from_the_run_files_is_escaped(runs):
    text = build_report([load_run(d) for d in runs["dirs"]])
    assert NOTE not in text and "&lt;script&gt;alert(&quot;note&quot;)&lt;/script&gt; &amp; more" in text
    assert ODD_CLASS not in text  # in the figures' JSON "<" is written \u003c
    assert ">&lt;b&gt;odd</td>" in text  # the per-class table's cell


@pytest.mark.slow  # trains the runs once (about 10 s)
def test_the_cli_writes_the_report_and_says_where(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_RUNS_DIR, str(runs["settings"].runs_dir))
    out = tmp_path / "out" / "report.html"
    ids = [load_run(d).run_id for d in runs["dirs"][:2]]
    assert main(["report", "--runs", ids[0], runs["dirs"][1], "--out", str(out)]) == 0  # an id and a folder
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["out"] == str(out) and last["bytes"] == out.stat().st_size > 1_000_000 and last["runs"] == ids
    text = out.read_text()
    assert all(i in text for i in ids) and runs["dead"] not in text
    assert not list(out.parent.glob(".*tmp*"))  # written atomically: no temporary left


@pytest.mark.slow  # trains the runs once (about 10 s)
def test_the_cli_says_plainly_when_a_run_is_missing(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_RUNS_DIR, str(runs["settings"].runs_dir))
    out = tmp_path / "report.html"
    assert main(["report", "--runs", runs["dirs"][0], "no-such-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no-such-run" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow  # trains the runs once (about 10 s)
def test_compare_pages_button_builds_the_report_of_the_chosen_runs(runs, monkeypatch):
    monkeypatch.setenv(ENV_CACHE_DIR, str(runs["settings"].cache_dir))
    monkeypatch.setenv(ENV_RUNS_DIR, str(runs["settings"].runs_dir))
    from streamlit.runtime.media_file_manager import MediaFileManager

    deferred = {}
    original = MediaFileManager.add_deferred

    def keep(self, data_callable, *args, **kwargs):  # what a click on a deferred download runs
        deferred[kwargs.get("file_name")] = data_callable
        return original(self, data_callable, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", keep)
    chosen = sorted(load_run(d).run_id for d in runs["dirs"][1:3])
    at = open_app_page("app_pages/compare.py", query={"compare_runs": chosen})
    assert sorted(at.multiselect(key="compare_runs").value) == chosen
    assert at.download_button(key="download_report").proto.label == "📄 Download report"
    text = deferred["transfer-lab-report.html"]()
    assert_offline(text, check_html(text))
    assert all(i in text for i in chosen)
    others = {load_run(d).run_id for d in runs["dirs"]} - set(chosen)
    assert not [i for i in others if i in text]


@pytest.mark.slow  # trains the runs once (about 10 s)
def test_report_html_is_built_once_per_state_of_the_run_files(runs):
    records = [load_run(d) for d in runs["dirs"][:1]]
    first = report_html(records)
    assert report_html(records) is first
    (records[0].dir / "status.json").touch()  # as a new epoch or a summary would
    rebuilt = report_html(records)
    assert rebuilt is not first


# -------------------------------------------------------------------------------------- reproduce commands


def _planned():
    cfg = RunConfig(
        data=DataConfig(source="flowers", img_size=160, limit_per_class=40),
        model=ModelConfig(backbone="efficientnet_lite0", regime="scratch"),
        train=TrainConfig(epochs=6, lr=3e-3, weight_decay=1e-2, schedule="onecycle", train_img_size=96,
                          full_size_epochs=2, feature_views=3, precision="bf16", feature_cache="off"),
        preset="5 minutes", group="g-1", plan={"predicted_seconds": 12.0},
    )  # fmt: skip
    return cfg


CONFIGS = {
    "transfer defaults": lambda: regime_defaults(RunConfig(model=ModelConfig(regime="transfer"))),
    "scratch notebook": lambda: RunConfig(model=ModelConfig(regime="scratch")),
    "finetune, odd path, own split": lambda: RunConfig(
        data=DataConfig(
            source="/data/my 'flowers' $HOME",
            img_size=64,
            val_fraction=0.2,
            test_fraction=0.15,
            limit_per_class=9,
            split_seed=11,
        ),
        model=ModelConfig(backbone="resnet18", regime="finetune", freeze=0),
        train=TrainConfig(epochs=2, batch_size=8, lr=3.3e-05, seed=4, num_threads=1, runtime="torch"),
    ),  # fmt: skip
    "notebook recipe preset": lambda: apply_preset(RunConfig(model=ModelConfig(regime="transfer")), "notebook recipe"),
    "planned race": _planned,
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reproduce_command_parses_back_to_the_same_config(name):
    cfg = CONFIGS[name]().validate()
    command = reproduce_command(cfg.to_dict())
    assert "not reproduced" not in command, command
    argv = shlex.split(command.splitlines()[0])
    assert argv[:4] == ["python", "-m", "core", "train"]
    back = config_from_args(build_parser().parse_args(argv[3:]))
    assert (back.data, back.model, back.train) == (cfg.data, cfg.model, cfg.train)
    if cfg.preset == "5 minutes":  # its plan as flags: parsing them plans nothing again
        assert back.preset is None and "planned by the '5 minutes' preset" in command
    else:
        assert back.preset == cfg.preset


def test_reproduce_command_says_what_it_cannot_set():
    cfg = RunConfig(train=TrainConfig(hflip=False, rotation_degrees=0.0)).to_dict()
    cfg["train"]["augment_strength"] = 3  # a field a newer version wrote
    command = reproduce_command(cfg)
    first, *notes = command.splitlines()
    assert notes and all(n.startswith("# ") for n in notes)
    said = "\n".join(notes)
    assert "train.hflip = False (this command gives True)" in said and "train.rotation_degrees = 0.0" in said
    assert "train.augment_strength = 3 (unknown to this version)" in said
    back = config_from_args(build_parser().parse_args(shlex.split(first)[3:]))
    assert back.train.hflip is True  # what the command alone trains: hence the note
