"""The shared training queue: jobs run one at a time, in order; Stop stops; failures don't kill the queue."""

from __future__ import annotations

import threading

import pytest

from core.app.jobs import JobQueue
from core.errors import ConfigError, DataError
from core.runs.store import load_run
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.events import BatchEnd, RunStarted

WAIT = 30.0  # s: generous, for a loaded CPU; every wait below ends as soon as its event happens


class FakeRunner:
    """Records overlap: a real queue never runs two jobs at once. With ``hold``, each job reports its first batch,
    sets ``progressed`` and waits for ``release`` before going on."""

    def __init__(self, batches=20, hold=False):
        self.batches = batches
        self.running = 0
        self.max_running = 0
        self.order = []
        self.lock = threading.Lock()
        self.progressed = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, cfg, settings, on_event, should_stop):
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.order.append(cfg.train.seed)
        try:
            on_event(RunStarted(f"run-{cfg.train.seed}", f"/tmp/run-{cfg.train.seed}"))
            for b in range(1, self.batches + 1):
                if should_stop():
                    return {"status": "interrupted", "seed": cfg.train.seed}
                on_event(BatchEnd(1, 1, b, self.batches, 0.5, 100.0, 0.0))
                if b == 1:
                    self.progressed.set()
                    if not self.release.wait(WAIT):
                        raise RuntimeError("the test never released the runner")
            if cfg.note == "boom":
                raise DataError("the folder vanished")
            return {"status": "finished", "seed": cfg.train.seed}
        finally:
            with self.lock:
                self.running -= 1


def _cfg(seed, note=""):
    return RunConfig(train=TrainConfig(seed=seed), note=note)


def test_jobs_from_many_sessions_run_one_at_a_time_in_order(settings):
    runner = FakeRunner(hold=True)
    q = JobQueue(runner)
    # several "browser sessions" submit at the same moment
    threads = [threading.Thread(target=q.submit, args=(_cfg(i), settings)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runner.progressed.wait(WAIT)  # the first job is running, held after its first batch
    jobs = q.jobs()
    assert [q.position(j.id) for j in jobs] == list(range(6))  # 0 runs, the others know their place in line
    assert q.busy() and not q.wait_idle(timeout=0.01)  # a held job: not idle
    runner.release.set()
    assert q.wait_idle(WAIT)
    assert not q.busy() and all(q.position(j.id) is None for j in jobs)
    assert runner.max_running == 1  # the others stayed queued while the first was held
    assert runner.order == [j.config.train.seed for j in jobs]  # first come, first served
    assert all(j.state == "finished" and j.run_id == f"run-{j.config.train.seed}" for j in q.jobs())
    assert all(j.progress["batch"] == runner.batches for j in q.jobs())


def test_stop_running_and_cancel_queued(settings):
    runner = FakeRunner(hold=True)
    q = JobQueue(runner)
    a, b = q.submit(_cfg(1), settings), q.submit(_cfg(2), settings)
    assert runner.progressed.wait(WAIT)  # a is running and has reported its first batch
    assert q.get(a.id).state == "running" and q.get(a.id).progress["batch"] == 1
    assert q.position(a.id) == 0 and q.position(b.id) == 1
    assert q.stop(b.id) and q.get(b.id).state == "cancelled" and q.position(b.id) is None
    assert q.stop(a.id)
    runner.release.set()
    assert q.wait_idle(WAIT)
    done = q.get(a.id)
    assert done.state == "interrupted" and done.progress["batch"] == 1 and done.summary["status"] == "interrupted"
    assert runner.order == [1]  # the cancelled job never started
    assert not q.stop(a.id) and not q.stop(b.id)  # already over


def test_a_failing_job_does_not_stop_the_queue(settings):
    q = JobQueue(FakeRunner(batches=2))
    bad, good = q.submit(_cfg(1, note="boom"), settings), q.submit(_cfg(2), settings)
    assert q.wait_idle(WAIT)
    assert q.get(bad.id).state == "failed" and "vanished" in q.get(bad.id).error
    assert q.get(good.id).state == "finished"


def test_a_bug_in_a_run_fails_that_job_only(settings):
    def buggy(cfg, settings, on_event, should_stop):
        if cfg.train.seed == 1:
            raise ZeroDivisionError("division by zero")
        return {"status": "finished"}

    q = JobQueue(buggy)
    bad, good = q.submit(_cfg(1), settings), q.submit(_cfg(2), settings)
    assert q.wait_idle(WAIT)
    assert q.get(bad.id).state == "failed" and q.get(bad.id).error == "ZeroDivisionError: division by zero"
    assert q.get(good.id).state == "finished"


def test_invalid_config_is_refused_at_submit(settings):
    q = JobQueue(FakeRunner())
    with pytest.raises(ConfigError):
        q.submit(RunConfig(train=TrainConfig(epochs=0)), settings)
    assert q.jobs() == [] and not q.busy() and q.wait_idle(0)


@pytest.mark.timeout(300)
def test_real_run_through_the_queue_lands_in_the_run_store(settings, tiny_folder):
    q = JobQueue()
    cfg = RunConfig(
        data=DataConfig(source=str(tiny_folder), img_size=32),
        model=ModelConfig(backbone="efficientnet_lite0", regime="transfer"),
        train=TrainConfig(epochs=2),
    )
    job = q.submit(cfg, settings)
    assert q.wait_idle(120)
    done = q.get(job.id)
    assert done.state == "finished" and done.run_dir
    run = load_run(done.run_dir)
    assert run.status == "finished" and len(run.metrics) == 2 and run.summary["test_acc"] == done.summary["test_acc"]
