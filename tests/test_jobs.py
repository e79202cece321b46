"""The app's training queue: runs queue in the run store, one worker process trains them one at a time and in
order; Stop stops (only for the browser that launched the run, or the teacher); the queue survives a restart
of the server and the death of its worker."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import pytest

from core.app import jobs
from core.app.jobs import NotYours, Training
from core.errors import ConfigError
from core.runs.store import RunStore, load_run
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from tests.helpers import wait_until

WAIT = 180.0  # s: generous, for a loaded CPU; every wait below ends as soon as its state is reached


def _cfg(source, regime="transfer", epochs=1, img_size=32, seed=0) -> RunConfig:
    return RunConfig(
        data=DataConfig(source=str(source), img_size=img_size),
        model=ModelConfig(backbone="efficientnet_lite0", regime=regime),
        train=TrainConfig(epochs=epochs, seed=seed),
        group="g-test",
    )


def _long(source) -> RunConfig:
    """A run that trains for minutes unless stopped."""
    return _cfg(source, regime="full", epochs=200, img_size=64)


def status(settings, run_id) -> str:
    return RunStore(settings.runs_dir).get(run_id).status


def training_now(settings, run_id) -> bool:
    run = RunStore(settings.runs_dir).get(run_id)
    return run.status == "running" and run.progress.get("phase") == "train"


@contextlib.contextmanager
def restarted_server(settings):
    """A new server's training on the same store, as ``shared_training()`` makes it at start; stopped after."""
    restarted = Training(settings, idle_seconds=3)
    restarted.wake()
    try:
        yield restarted
    finally:
        restarted.shutdown()


@pytest.fixture
def training(settings):
    t = Training(settings, idle_seconds=3)
    yield t
    t.shutdown()


@pytest.mark.slow
def test_runs_from_many_sessions_queue_in_the_store_and_train_one_at_a_time_in_order(settings, tiny_folder, training):
    ids = []
    lock = threading.Lock()

    def launch(seed):  # several "browser sessions" press the button at the same moment
        run_ids = training.submit([_cfg(tiny_folder, seed=seed)], owner=f"session-{seed}")
        with lock:
            ids.extend(run_ids)

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 3 and all(status(settings, i) in ("queued", "running") for i in ids)  # in the store at once
    assert training.wait_idle(WAIT)
    runs = {r.run_id: r for r in RunStore(settings.runs_dir).list_runs()}
    assert all(runs[i].status == "finished" for i in ids), [(runs[i].status, runs[i].error) for i in ids]
    order = sorted(ids, key=lambda i: runs[i].queued_at)  # first come...
    started = [os.stat(runs[i].dir / "split.json").st_mtime_ns for i in order]  # written as a run starts
    ended = [os.stat(runs[i].dir / "summary.json").st_mtime_ns for i in order]  # written as it ends
    assert started == sorted(started)  # ...first served
    assert all(ended[k] <= started[k + 1] for k in range(len(order) - 1))  # never two at once
    assert {runs[i].owner for i in ids} == {"session-0", "session-1", "session-2"}
    assert training.workers_started == 1  # one worker trained them all


def test_invalid_config_is_refused_at_submit_and_nothing_is_queued(settings, tiny_folder, training):
    with pytest.raises(ConfigError):
        training.submit([_cfg(tiny_folder), RunConfig(train=TrainConfig(epochs=0))])
    assert RunStore(settings.runs_dir).list_runs() == [] and not training.busy()


@pytest.mark.slow
def test_stop_is_the_launchers_or_the_teachers(settings, tiny_folder, training):
    running, queued = training.submit([_long(tiny_folder), _cfg(tiny_folder)], owner="alice")
    assert wait_until(lambda: training_now(settings, running), WAIT)
    assert status(settings, queued) == "queued"
    with pytest.raises(NotYours):  # another student
        training.stop(queued, owner="bob")
    with pytest.raises(NotYours):  # a session without a token
        training.stop(running, owner="")
    assert training.stop(queued, owner="alice")
    assert status(settings, queued) == "cancelled"  # at once, without the worker
    assert training.stop(running, owner="bob", teacher=True)  # the teacher may stop anyone's
    assert training.wait_idle(WAIT)
    run, never = load_run(settings.runs_dir / running), load_run(settings.runs_dir / queued)
    assert run.status == "interrupted" and len(run.metrics) < 200
    assert never.status == "cancelled" and never.metrics == [] and not (never.dir / "split.json").exists()
    assert not training.stop(running, owner="alice")  # already over


@pytest.mark.slow
def test_a_failing_run_does_not_stop_the_queue(settings, tiny_folder, training):
    bad, good = training.submit([_cfg(tiny_folder.parent / "vanished"), _cfg(tiny_folder)])
    assert training.wait_idle(WAIT)
    failed = load_run(settings.runs_dir / bad)
    assert failed.status == "failed" and "Dataset not found" in failed.error  # says why, in its folder
    assert status(settings, good) == "finished"


@pytest.mark.slow
def test_a_queued_run_survives_a_server_restart(settings, tiny_folder):
    # the last server queued a run and went away before its worker took it
    run_id = RunStore(settings.runs_dir).enqueue(_cfg(tiny_folder).to_dict(), owner="alice")
    with restarted_server(settings) as restarted:
        assert restarted.wait_idle(WAIT)
        assert status(settings, run_id) == "finished" and restarted.workers_started == 1


@pytest.mark.slow
def test_stopping_the_server_keeps_the_run_interrupted_and_the_queue_for_the_next(settings, tiny_folder, training):
    running, waiting = training.submit([_long(tiny_folder), _cfg(tiny_folder)])
    assert wait_until(lambda: training_now(settings, running), WAIT)
    training.shutdown()  # SIGTERM to the worker, as when the server stops
    run = load_run(settings.runs_dir / running)
    assert run.status == "interrupted" and run.summary["status"] == "interrupted"  # ended cleanly, after a batch
    assert status(settings, waiting) == "queued"  # left for the next server
    with restarted_server(settings) as restarted:
        assert restarted.wait_idle(WAIT) and status(settings, waiting) == "finished"


@pytest.mark.slow
def test_a_worker_killed_mid_batch_leaves_an_interrupted_run_and_the_queue_goes_on(settings, tiny_folder, training):
    killed, next_one = training.submit([_long(tiny_folder), _cfg(tiny_folder)])
    assert wait_until(lambda: training_now(settings, killed), WAIT)
    os.kill(training.worker_pid(), signal.SIGKILL)  # no handler, no summary: only the lock goes with it
    assert wait_until(lambda: status(settings, killed) == "interrupted", 30)
    assert training.wait_idle(WAIT)
    run = load_run(settings.runs_dir / killed)
    assert run.summary == {} and "ended before the run finished" in run.error
    assert status(settings, next_one) == "finished" and training.workers_started == 2  # a new worker took over


@pytest.mark.slow
def test_a_run_that_does_not_stop_in_time_is_killed(settings, tiny_folder, training, monkeypatch):
    monkeypatch.setattr(jobs, "STOP_GRACE_SECONDS", 0.0)  # a step that never ends, as seen from the server
    run_id = training.submit([_long(tiny_folder)], owner="alice")[0]
    assert wait_until(lambda: training_now(settings, run_id), WAIT)
    pid = training.worker_pid()
    training.stop(run_id, owner="alice")
    assert wait_until(lambda: status(settings, run_id) == "interrupted", 30)
    assert wait_until(lambda: training.worker_pid() != pid, 30)  # the worker was killed, not asked


def test_the_worker_starts_while_the_app_script_is_main(settings, tiny_folder, training, tmp_path, monkeypatch):
    """Streamlit makes the page script ``__main__`` while it runs, and a spawned child runs its parent's main script
    first: the worker must start and train without running the app (here, a script that fails when run)."""
    import types

    script = tmp_path / "an_app.py"
    script.write_text("raise RuntimeError('the worker ran the app script')\n")
    app = types.ModuleType("__main__")
    app.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", app)
    [run_id] = training.submit([_cfg(tiny_folder)])
    assert training.wait_idle(WAIT)
    assert status(settings, run_id) == "finished"
    assert sys.modules["__main__"] is app  # put back
