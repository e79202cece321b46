"""The race figure and the live view that merges the shared queue with the run store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.app.live import (
    LiveRun,
    at_chance,
    chance_level,
    chance_note,
    group_view,
    latest_group,
    latest_race,
    progress_fraction,
    progress_text,
    shown_launches,
)
from core.app.plots import REGIME_COLOURS, CurveSeries, race_figure
from core.runs.store import RunRecord, RunStore
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig, new_group_id
from core.training.train import train_run


def _metrics(val_losses, seconds=10.0):
    return [
        {"epoch": i + 1, "train_loss": 1.0, "val_loss": v, "train_acc": 0.5, "val_acc": 1 - v / 2, "seconds": seconds}
        for i, v in enumerate(val_losses)
    ]


def test_race_figure_overlays_runs_with_styles_and_best_epoch():
    fig = race_figure(
        [
            CurveSeries("A", "transfer", _metrics([0.9, 0.5, 0.7], seconds=2.0)),
            CurveSeries("B", "scratch", _metrics([1.2, 1.1], seconds=30.0)),
        ]
    )
    by_name = {}
    for t in fig.data:
        by_name.setdefault(t.name, []).append(t)
    assert by_name["A — train"][0].line.dash == "dash" and by_name["A — val"][0].line.dash == "solid"
    assert by_name["A — val"][0].line.color == REGIME_COLOURS["transfer"]
    assert by_name["B — val"][0].line.color == REGIME_COLOURS["scratch"]
    stars = by_name["A — best epoch"]
    # lowest val loss at epoch 2, on both panels, drawn at that epoch's end on the run's own clock
    assert len(stars) == 2 and all(s.x == (4.0,) for s in stars) and stars[0].customdata == (2,)
    assert by_name["B — val"][0].x == (30.0, 60.0)  # the slow regime's epochs lie further right
    assert stars[0].y == (0.5,) and stars[1].y == (0.75,)
    assert [a.text for a in fig.layout.annotations] == ["Loss", "Accuracy"]


@pytest.mark.slow
def test_group_view_shows_a_launch_from_the_store_with_queue_positions(settings, tiny_folder):
    group = new_group_id()
    cfg = RunConfig(
        data=DataConfig(source=str(tiny_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="transfer"),
        train=TrainConfig(epochs=1),
        group=group,
    )
    store = RunStore(settings.runs_dir)
    # a finished run of the launch (e.g. from the CLI), two queued behind it, one of them cancelled, and a run
    # of another launch queued before them
    outside = train_run(cfg, settings)
    other = store.enqueue({**cfg.to_dict(), "group": "g-0-other"})
    first = store.enqueue(cfg.to_dict(), owner="alice")
    cancelled = store.enqueue({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "regime": "full"}}, owner="bob")
    second = store.enqueue({**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "regime": "scratch"}})
    assert store.request_stop(cancelled, by="bob")
    stored = store.list_runs()
    assert latest_group(stored) == group
    view = group_view(group, stored)
    assert [v.run_id for v in view] == [outside["run_id"], first, cancelled, second]  # in launch order
    assert [v.state for v in view] == ["finished", "queued", "cancelled", "queued"]
    assert [v.position for v in view] == [None, 2, None, 3]  # the other launch's run is first in line
    assert [v.label for v in view] == ["Transfer learning", "Transfer learning", "Fine-tune everything", "From scratch"]
    assert view[0].summary["test_acc"] is not None and len(view[0].metrics) == 1
    assert view[1].owner == "alice" and progress_text(view[1]) == "queued — position 2"
    assert [v.run_id for v in group_view("g-0-other", stored)] == [other]  # only that launch


def _record(run_id: str, group, status: str = "finished", owner: str = "") -> RunRecord:
    return RunRecord(run_id=run_id, dir=Path("/nowhere") / run_id, status=status, config={"group": group}, owner=owner)


def test_the_train_page_shows_every_active_launch_its_own_first():
    oldest, alices, newer, newest = (new_group_id() for _ in range(4))
    runs = [  # newest first, as listed
        _record("r6", newest, "finished", owner="carol"),
        _record("r5", newer, "queued", owner="bob"),
        _record("r4", newer, "running", owner="bob"),
        _record("r3", alices, "queued", owner="alice"),
        _record("r2", alices, "finished", owner="alice"),
        _record("r1", oldest, "queued"),  # from the command line
    ]
    # every launch with a run queued or training; alice's first, then the others newest first; carol's ended
    # launch is not among them, though it is the newest
    assert shown_launches(runs, "alice") == [alices, newer, oldest]
    assert shown_launches(runs, "bob") == [newer, alices, oldest]
    assert shown_launches(runs, "") == [newer, alices, oldest]  # a session that launched nothing
    # carol's launch has ended while the others train: her results stay in view, after the live races
    assert shown_launches(runs, "carol") == [newer, alices, oldest, newest]
    ended = [replace(r, status="finished") for r in runs]
    # none active: this browser's newest launch, then the newest of anyone else's (the class's last race)
    assert shown_launches(ended, "alice") == [alices, newest]
    assert shown_launches(ended, "carol") == [newest, newer]
    assert shown_launches(ended, "") == [newest]
    assert shown_launches([], "alice") == []


def _ended(regime: str, test_acc, val_accs=(), state: str = "finished", classes: int = 5) -> LiveRun:
    metrics = [{"epoch": i + 1, "val_acc": a} for i, a in enumerate(val_accs)]
    summary = {} if test_acc is None else {"test_acc": test_acc}
    return LiveRun("x", regime, "b", state, metrics=metrics, summary=summary, num_classes=classes)


def test_a_run_at_chance_gets_one_sentence_of_why():
    runs = [_ended("scratch", 0.2), _ended("transfer", 0.9)]
    chance = chance_level(runs)
    assert chance == pytest.approx(1 / 5)  # five classes: a guess is right one time in five
    assert at_chance(runs[0], chance) and not at_chance(runs[1], chance)
    assert at_chance(_ended("scratch", 0.25), chance)  # barely above a guess still sits at chance
    assert not at_chance(_ended("scratch", 0.45), chance)  # it has started to learn
    # no test accuracy (stopped early): its best validation accuracy decides
    assert at_chance(_ended("scratch", None, (0.18, 0.22), state="interrupted"), chance)
    assert not at_chance(_ended("scratch", None, (0.2, 0.6), state="interrupted"), chance)
    assert not at_chance(_ended("scratch", 0.2, state="running"), chance)  # still training: not yet
    assert chance_level([_ended("scratch", None, classes=0)]) is None  # queued runs do not know their classes
    assert not at_chance(runs[0], None)
    note = chance_note(runs[0], chance)
    assert "20%" in note and "random weights" in note and "many more epochs" in note
    assert "learning rate" in chance_note(_ended("full", 0.2), chance)


def test_the_race_figure_draws_chance_on_the_accuracy_panel():
    runs = [CurveSeries("A", "scratch", _metrics([1.5, 1.5]))]
    assert not race_figure(runs).layout.shapes
    fig = race_figure(runs, chance=0.2)
    [line] = fig.layout.shapes
    assert (line.y0, line.y1) == (0.2, 0.2) and line.line.dash == "dot"
    assert line.yref == "y2"  # the accuracy panel, not the loss
    assert any(a.text == "chance 20%" for a in fig.layout.annotations)


def test_latest_group_and_latest_race_pick_what_to_compare():
    old, new = new_group_id(), new_group_id()
    runs = [  # as the store lists them: newest first
        _record("r7", None),
        _record("r6", new, "running"),
        _record("r5", ""),
        _record("r4", new),
        _record("r3", old),
        _record("r2", None),
        _record("r1", None, "interrupted"),
    ]
    assert latest_group(runs) == new
    assert latest_race(runs) == ["r6", "r4"]  # the newest launch, whatever the state of its runs
    ungrouped = [r for r in runs if r.config["group"] not in (old, new)]
    assert latest_group(ungrouped) is None
    assert latest_race(ungrouped) == ["r7", "r5", "r2"]  # else the newest finished runs...
    assert latest_race(ungrouped * 2) == ["r7", "r5", "r2", "r7"]  # ...four of them at most
    assert latest_race([]) == [] and latest_group([]) is None


def test_group_ids_sort_by_launch_time_even_within_a_second():
    ids = [new_group_id() for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50


def test_progress_text_and_fraction():
    r = LiveRun(
        "x",
        "transfer",
        "b",
        "running",
        progress={
            "phase": "train",
            "epoch": 2,
            "epochs": 4,
            "batch": 5,
            "batches": 10,
            "images_per_sec": 123.4,
            "eta_seconds": 75,
        },
    )
    assert progress_fraction(r) == 0.375
    assert progress_text(r) == "epoch 2/4 · batch 5/10 · 123 img/s · ETA 1:15"
    assert progress_text(LiveRun("x", "t", "b", "queued", position=2)) == "queued — position 2"
    assert progress_text(replace(r, stopping=True)) == "stopping after this batch…"
    feats = LiveRun(
        "x",
        "t",
        "b",
        "running",
        progress={"phase": "features", "done": 3, "total": 9, "message": "computing backbone features"},
    )
    assert progress_text(feats) == "computing backbone features (3/9)" and progress_fraction(feats) == 0.0
    assert progress_fraction(LiveRun("x", "t", "b", "finished")) == 1.0
