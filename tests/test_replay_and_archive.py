"""Replaying an ended launch (core.app.replay), and a launch as one .zip (core.runs.archive, the CLI, the page)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

from core.app.live import ended_launches, progress_fraction
from core.app.replay import IDLE_SECONDS, SPEEDS, launch_replay, replay_clock
from core.cli import main
from core.errors import DataError
from core.runs import archive
from core.runs.archive import MANIFEST, export_launch, import_launch
from core.runs.compare import runs_table
from core.runs.store import TIMELINE, RunStore, read_timeline
from core.settings import ENV_TEACHER_PASSWORD, Settings
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig, new_group_id
from core.training.train import train_run
from tests.helpers import open_app_page

ORDER = ("queued", "running", "finished")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, session_cache, tiny_folder):
    """A launch really trained through the queue: transfer then scratch, 2 epochs at 32 px. (runs dir, group)"""
    runs_dir = tmp_path_factory.mktemp("recorded") / "runs"
    settings = Settings(cache_dir=session_cache, runs_dir=runs_dir)
    store, group = RunStore(runs_dir), new_group_id()
    for regime in ("transfer", "scratch"):
        cfg = RunConfig(data=DataConfig(source=str(tiny_folder), img_size=32),
                        model=ModelConfig(backbone="efficientnet_lite0", regime=regime),
                        train=TrainConfig(epochs=2, batch_size=16, lr=1e-3), group=group)  # fmt: skip
        store.enqueue(cfg.to_dict(), owner="alice")
    while (writer := store.claim_next()) is not None:
        train_run(RunConfig.from_dict(json.loads((writer.dir / "config.json").read_text())), settings, writer=writer)
        writer.release()
    return runs_dir, group


@pytest.fixture
def launch(recorded, tmp_path):
    """A copy of the recorded launch, this test's to change: (runs dir, group)."""
    runs_dir, group = recorded
    return Path(shutil.copytree(runs_dir, tmp_path / "store")), group


def _frames(replay, steps=400):
    end = replay.duration
    return [replay.at(end * i / steps) for i in range(-2, steps + 3)]


def _seen_rows(frames):
    """(run id, epoch) in the order the frames first show them."""
    seen = []
    for frame in frames:
        for run in frame:
            for row in run.metrics:
                if (run.run_id, row["epoch"]) not in seen:
                    seen.append((run.run_id, row["epoch"]))
    return seen


def _recorded_order(store: RunStore):
    rows = []
    for rec in store.list_runs():
        rows += [(e["at"], rec.run_id, e["epoch"]) for e in read_timeline(rec.dir) if "epoch" in e]
    return [(run, epoch) for _, run, epoch in sorted(rows)]


def test_replay_shows_the_recorded_epochs_in_order_and_states_move_on(launch):
    runs_dir, group = launch
    store = RunStore(runs_dir)
    records = store.list_runs()
    replay = launch_replay(group, records)
    frames = _frames(replay)
    assert _seen_rows(frames) == _recorded_order(store) and len(_seen_rows(frames)) == 4
    final = {r.run_id: r for r in records}
    for i, run_id in enumerate(r.run_id for r in frames[-1]):
        states = [frame[i].state for frame in frames]
        assert [ORDER.index(s) for s in states] == sorted(ORDER.index(s) for s in states)  # never backwards
        assert set(states) == set(ORDER)
        for frame in frames:  # a run's rows are always a prefix of its recorded ones, its summary only at the end
            run = frame[i]
            assert run.metrics == final[run_id].metrics[: len(run.metrics)]
            assert bool(run.summary) == (run.state == "finished")
        fractions = [progress_fraction(frame[i]) for frame in frames if frame[i].state == "running"]
        assert fractions == sorted(fractions) and fractions
    assert [r.position for r in frames[0]] == [1, 2]  # both waiting at the launch
    end = frames[-1]
    assert [(r.state, r.summary, r.metrics) for r in end] == [(r.state, r.summary, r.metrics) for r in replay.final]


def test_speed_4x_ends_4x_sooner(launch):
    runs_dir, group = launch
    replay = launch_replay(group, RunStore(runs_dir).list_runs())

    def ends_after(speed):  # real seconds, to a hundredth of the 1× replay
        step = replay.duration / 100
        return next(i * step for i in range(1000) if replay.ended(replay_clock(0.0, speed, i * step)))

    assert SPEEDS == (1, 4, 16)
    assert ends_after(4) == pytest.approx(ends_after(1) / 4, abs=replay.duration / 100)
    assert not replay.ended(replay_clock(0.0, 4, 0.9 * replay.duration / 4))


def test_idle_time_between_runs_is_cut(launch):
    runs_dir, group = launch
    store = RunStore(runs_dir)
    before = launch_replay(group, store.list_runs())
    second = sorted(store.list_runs(), key=lambda r: r.queued_at)[1]
    lines = read_timeline(second.dir)
    hour = [{**e, "at": e["at"] + (3600 if e.get("status") != "queued" else 0)} for e in lines]
    (second.dir / TIMELINE).write_text("".join(json.dumps(e) + "\n" for e in hour))  # it waited an hour to start
    after = launch_replay(group, store.list_runs())
    assert after.duration <= before.duration + IDLE_SECONDS
    assert _seen_rows(_frames(after)) == _seen_rows(_frames(before))


def test_runs_recorded_without_a_timeline_replay(launch):
    runs_dir, group = launch
    store = RunStore(runs_dir)
    for rec in store.list_runs():
        (rec.dir / TIMELINE).unlink()
    records = store.list_runs()
    replay = launch_replay(group, records)
    frames = _frames(replay)
    by_start = sorted(records, key=lambda r: r.queued_at)
    assert _seen_rows(frames) == [(r.run_id, m["epoch"]) for r in by_start for m in r.metrics]
    walls = sum(r.summary["wall_seconds"] for r in records)
    assert replay.duration >= walls - 1  # started_at is to the second
    training = [r.progress for f in frames for r in f if r.state == "running" and r.progress.get("phase") == "train"]
    assert training and all(1 <= p["batch"] <= p["batches"] for p in training)
    assert all(r.state == "finished" for r in frames[-1])


# ------------------------------------------------------------------------------------------------- archive


def test_export_then_import_round_trips_a_launch(launch, tmp_path):
    runs_dir, group = launch
    out = tmp_path / "launch.zip"
    manifest = export_launch(runs_dir, group, out, weights=True)
    assert any(name.endswith("best.pt") for name in manifest["files"])
    other = tmp_path / "other"
    result = import_launch(out, other)
    src, dst = RunStore(runs_dir).list_runs(), RunStore(other).list_runs()
    assert result == {"launch": group, "runs": sorted(r.run_id for r in src)}
    assert [(r.run_id, r.config, r.metrics, r.summary) for r in dst] == [
        (r.run_id, r.config, r.metrics, r.summary) for r in src
    ]
    assert runs_table(dst).equals(runs_table(src))  # the Compare table
    assert all(json.loads((r.dir / "status.json").read_text())["host"] == "imported" for r in dst)
    a, b = launch_replay(group, src), launch_replay(group, dst)
    assert a.duration == b.duration and _seen_rows(_frames(a)) == _seen_rows(_frames(b))
    for r in dst:
        assert torch.load(r.dir / "best.pt", weights_only=True).keys() == torch.load(
            runs_dir / r.run_id / "best.pt", weights_only=True).keys()  # fmt: skip
    with pytest.raises(DataError, match="already in the run store"):  # never twice
        import_launch(out, other)
    assert sorted(p.name for p in other.iterdir()) == sorted(r.run_id for r in src)
    light = export_launch(runs_dir, group, tmp_path / "light.zip")
    assert not any(name.endswith("best.pt") for name in light["files"])


class Evil:
    """Unpickled, it makes the folder EVIL_MARKER names: the sign that an archive's pickle ran code."""

    def __reduce__(self):
        return (os.mkdir, (os.environ["EVIL_MARKER"],))


def _rewrite(src: Path, dst: Path, change) -> None:
    """``dst``: the archive ``src`` with ``change(files, manifest)`` applied, ``files`` {name: bytes}."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(files.pop(MANIFEST))
    change(files, manifest)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(MANIFEST, json.dumps(manifest))


def _put(files, manifest, name, data, listed=True):
    import hashlib

    files[name] = data
    if listed:
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _weights_name(files):
    return next(n for n in files if n.endswith("best.pt"))


def _torch_pickle(files, manifest):
    buf = io.BytesIO()
    torch.save({"w": Evil()}, buf)
    _put(files, manifest, _weights_name(files), buf.getvalue())


def _plain_pickle(files, manifest):
    _put(files, manifest, _weights_name(files), pickle.dumps(Evil()))


def _slip(files, manifest):
    _put(files, manifest, "runs/../../evil.json", b"{}")


def _absolute(files, manifest):
    _put(files, manifest, "/tmp/evil.json", b"{}")


def _unknown(files, manifest):
    run = manifest["runs"][0]
    _put(files, manifest, f"runs/{run}/evil.py", b"print('hi')")


def _hash(files, manifest):
    name = next(n for n in files if n.endswith("metrics.jsonl"))
    files[name] = files[name].replace(b'"epoch": 1', b'"epoch": 9')  # same size, other bytes


def _declared_size(files, manifest):
    name = next(n for n in files if n.endswith("summary.json"))
    manifest["files"][name]["size"] = archive.MAX_JSON_BYTES + 1


def _bomb(files, manifest):
    name = next(n for n in files if n.endswith("predictions.json"))
    _put(files, manifest, name, b"{}" + b" " * (8 * 1024**2))  # valid JSON, packed ~1000:1


def _nan(files, manifest):
    name = next(n for n in files if n.endswith("summary.json"))
    _put(files, manifest, name, files[name].replace(b'"test_acc": ', b'"test_acc": NaN, "x": '))


@pytest.mark.parametrize(
    "tamper, words",
    [
        (_torch_pickle, "not a plain checkpoint"),
        (_plain_pickle, "not a plain checkpoint"),
        (_slip, "unsafe entry"),
        (_absolute, "unsafe entry"),
        (_unknown, "not a file of a run folder"),
        (_hash, "does not match its manifest"),
        (_declared_size, "over the"),
        (_bomb, "zip bomb"),
        (_nan, "not valid JSON"),
    ],
)
def test_a_tampered_archive_is_refused_with_nothing_written(launch, tmp_path, monkeypatch, tamper, words):
    runs_dir, group = launch
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    export_launch(runs_dir, group, good, weights=True)
    _rewrite(good, bad, tamper)
    other = tmp_path / "other"
    import_launch(good, tmp_path / "control")  # the untampered archive imports
    with pytest.raises(DataError, match=words):
        import_launch(bad, other)
    assert not marker.exists()  # the pickle's code never ran
    assert list(other.iterdir()) == []  # not even a temporary folder
    assert not (tmp_path.parent / "evil.json").exists() and not Path("/tmp/evil.json").exists()


def test_oversized_file_is_refused(launch, tmp_path, monkeypatch):
    runs_dir, group = launch
    export_launch(runs_dir, group, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    limit = sizes.pop(MANIFEST)
    assert max(sizes.values()) > limit  # a split.json is larger than the manifest
    monkeypatch.setattr(archive, "MAX_JSON_BYTES", limit)
    with pytest.raises(DataError, match=f"over the {limit:,} bytes"):
        import_launch(tmp_path / "a.zip", tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_export_refuses_an_unknown_or_unfinished_launch(launch, tmp_path):
    runs_dir, group = launch
    with pytest.raises(DataError, match="No launch"):
        export_launch(runs_dir, "g-nope", tmp_path / "a.zip")
    store = RunStore(runs_dir)
    store.enqueue({**store.list_runs()[0].config, "group": group})
    with pytest.raises(DataError, match="not ended"):
        export_launch(runs_dir, group, tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_cli_exports_imports_and_refuses_with_exit_2(launch, settings, tmp_path, capsys):
    runs_dir, group = launch
    shutil.copytree(runs_dir, settings.runs_dir)
    assert main(["runs"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {r["launch"] for r in listed} == {group}
    out = tmp_path / "l.zip"
    assert main(["export-launch", group, str(out), "--weights", "--quiet"]) == 0
    exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exported["bytes"] == out.stat().st_size and len(exported["runs"]) == 2
    other = tmp_path / "other"
    assert main(["import-launch", str(out), "--runs-dir", str(other), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["launch"] == group
    for args, words in (
        (["import-launch", str(out), "--runs-dir", str(other)], "already in the run store"),
        (["export-launch", "g-nope", str(tmp_path / "x.zip")], "No launch"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    (tmp_path / "not.zip").write_bytes(b"hello")
    assert main(["import-launch", str(tmp_path / "not.zip"), "--runs-dir", str(tmp_path / "x")]) == 2
    assert "not a valid .zip" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- page


@pytest.mark.slow
def test_train_page_replays_an_ended_launch_and_refuses_a_bad_import(launch, settings, monkeypatch):
    runs_dir, group = launch
    shutil.copytree(runs_dir, settings.runs_dir)
    # a race 1000 times longer (about an hour at 16×): the page's frame is still mid-race, however slow the test
    lines = {rec.dir: read_timeline(rec.dir) for rec in RunStore(settings.runs_dir).list_runs()}
    origin = min(e["at"] for timeline in lines.values() for e in timeline)
    for folder, timeline in lines.items():
        stretched = [{**e, "at": origin + 1000 * (e["at"] - origin)} for e in timeline]
        (folder / TIMELINE).write_text("".join(json.dumps(e) + "\n" for e in stretched))
    monkeypatch.setenv(ENV_TEACHER_PASSWORD, "secret")
    at = open_app_page("app_pages/train.py", state={"owner": "alice"})
    assert not at.file_uploader and any("teacher imports" in c.value for c in at.caption)  # students may not
    at.session_state["teacher"] = True
    at.run()
    assert at.button(key=f"replay-{group}") and at.download_button(key=f"export-{group}")
    at.segmented_control(key=f"replay-speed-{group}").set_value(16)
    at.button(key=f"replay-{group}").click().run()
    assert not at.exception, at.exception
    state = at.session_state["train_replay"]
    assert state["speed"] == 16 and state["group"] == group
    state["started"] -= 0.5 * state["replay"].duration / 16  # half way through the race
    at.run()
    assert not at.exception, at.exception
    assert any("Replay at **16×**" in c.value for c in at.caption)
    frame = state["replay"].at(replay_clock(state["started"], 16, time.time()))
    assert "running" in {r.state for r in frame}  # mid-race, drawn as a live race is: a progress bar
    assert any(run.label in bar.proto.text for bar in at.get("progress") for run in frame if run.state == "running")
    buttons = [b.key for b in at.button]
    assert f"stop-replay-{group}" in buttons and f"replay-{group}" not in buttons
    state["started"] -= state["replay"].duration  # past its end: the results again
    at.run()
    assert "train_replay" not in at.session_state and f"replay-{group}" in [b.key for b in at.button]

    at.file_uploader(key="import_launch").set_value(("bad.zip", b"not a zip", "application/zip")).run()
    assert not at.exception, at.exception
    assert any("not a valid .zip" in e.value for e in at.error)


@pytest.mark.slow
def test_any_earlier_launch_can_be_shown_again_to_replay(launch, settings):
    """The page shows the newest launches by itself; an older one is picked under "Earlier launches" and gets
    its Replay and Export like the others."""
    runs_dir, group = launch
    shutil.copytree(runs_dir, settings.runs_dir)
    newer = new_group_id()  # the same runs again, launched later: the page's default is this one
    for rec in RunStore(settings.runs_dir).list_runs():
        again = shutil.copytree(rec.dir, rec.dir.with_name(rec.run_id[:-4] + "beef"))
        config = json.loads((again / "config.json").read_text())
        (again / "config.json").write_text(json.dumps({**config, "group": newer}))
    labels = ended_launches(RunStore(settings.runs_dir).list_runs())
    assert list(labels) == [newer, group]  # newest first
    assert "Transfer learning" in labels[group] and "From scratch" in labels[group]
    at = open_app_page("app_pages/train.py", state={"owner": "alice"})
    assert not at.exception, at.exception
    assert at.button(key=f"replay-{newer}") and f"replay-{group}" not in [b.key for b in at.button]
    at.selectbox(key="train_earlier_launch").set_value(group).run()
    assert not at.exception, at.exception
    assert {f"replay-{newer}", f"replay-{group}"} <= {b.key for b in at.button}
    at.button(key=f"replay-{group}").click().run()
    assert at.session_state["train_replay"]["group"] == group
