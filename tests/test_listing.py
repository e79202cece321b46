"""The server's shared listing of the run store: a refresh re-reads only the runs whose files changed, sees
every change (new epochs, live progress, a process that died, new and removed runs), and is shared by every
browser session."""

from __future__ import annotations

import os
import shutil
import threading
import time

from core.runs.listing import Listing, shared_listing
from core.runs.store import RunStore

CONFIG = {"data": {"source": "sample"}, "model": {"regime": "transfer", "backbone": "efficientnet_lite0"},
          "train": {"epochs": 2}, "group": "g-1"}  # fmt: skip


def finished_run(store: RunStore):
    w = store.create("transfer", "efficientnet_lite0")
    w.write_config(CONFIG)
    w.append_metrics({"epoch": 1, "val_loss": 1.0})
    w.write_summary({"status": "finished", "test_acc": 0.5})
    w.release()
    return w


def age(run_dir, seconds=60) -> None:
    """Make a run's files look written ``seconds`` ago: what a listing can trust not to change unseen."""
    past = time.time() - seconds
    for path in (run_dir / "metrics.jsonl", run_dir):
        if path.exists():
            os.utime(path, (past, past))


def test_a_refresh_rereads_only_what_changed_and_sees_every_change(settings):
    store = RunStore(settings.runs_dir)
    runs = [finished_run(store) for _ in range(20)]
    live = store.create("full", "efficientnet_lite0")  # trained by "this process" from now on
    live.write_config(CONFIG)
    for w in [*runs, live]:
        age(w.dir)
    listing = Listing(settings.runs_dir)
    assert len(listing.runs()) == 21 and listing.loads == 21
    assert len(listing.runs(max_age=0)) == 21 and listing.loads == 21  # nothing changed: nothing read

    live.write_progress({"phase": "train", "epoch": 1, "batch": 3})  # replaced by rename: the folder changes
    assert {r.run_id: r.progress.get("batch") for r in listing.runs(max_age=0)}[live.run_id] == 3
    assert listing.loads == 22
    live.append_metrics({"epoch": 1, "val_loss": 0.9})  # appended in place: the folder does not change
    assert len({r.run_id: r for r in listing.runs(max_age=0)}[live.run_id].metrics) == 1
    assert listing.loads == 23

    age(live.dir)
    assert {r.run_id: r.status for r in listing.runs(max_age=0)}[live.run_id] == "running"
    live.release()  # its process died: no file changes, but it is not running any more
    assert {r.run_id: r.status for r in listing.runs(max_age=0)}[live.run_id] == "interrupted"

    shutil.rmtree(runs[0].dir)
    newer = finished_run(store)
    ids = [r.run_id for r in listing.runs(max_age=0)]
    assert runs[0].run_id not in ids and newer.run_id in ids and len(ids) == 21


def test_a_change_within_the_timestamp_resolution_is_not_missed(settings):
    store = RunStore(settings.runs_dir)
    w = store.create("transfer", "efficientnet_lite0")
    w.write_config(CONFIG)
    listing = Listing(settings.runs_dir)
    assert listing.runs(max_age=0)[0].status == "running"
    stamp = os.stat(w.dir).st_mtime_ns
    w.write_summary({"status": "finished"})
    os.utime(w.dir, ns=(stamp, stamp))  # as if both writes fell in the same clock tick
    assert listing.runs(max_age=0)[0].status == "finished"


def test_every_session_shares_one_listing_and_one_refresh(settings):
    store = RunStore(settings.runs_dir)
    for _ in range(5):
        finished_run(store)
    listing = shared_listing(settings.runs_dir)
    assert shared_listing(settings.runs_dir / ".." / settings.runs_dir.name) is listing
    before = listing.refreshes
    results = []
    tabs = [threading.Thread(target=lambda: results.append(listing.runs())) for _ in range(15)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    assert len(results) == 15 and all(r is results[0] for r in results)  # one snapshot for every tab
    assert listing.refreshes - before == 1  # 15 tabs polling in the same half second: one pass over the store
