"""The shared training queue: jobs run one at a time, in order; Stop stops; failures don't kill the queue."""

from __future__ import annotations

import threading
import time

import pytest

from core.app.jobs import JobQueue
from core.errors import ConfigError, DataError
from core.runs.store import load_run
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.events import BatchEnd, RunStarted


class FakeRunner:
    """Records overlap: a real queue never runs two jobs at once."""

    def __init__(self, batches=20, delay=0.01):
        self.batches, self.delay = batches, delay
        self.running = 0
        self.max_running = 0
        self.order = []
        self.lock = threading.Lock()

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
                time.sleep(self.delay)
                on_event(BatchEnd(1, 1, b, self.batches, 0.5, 100.0, 0.0))
            if cfg.note == "boom":
                raise DataError("the folder vanished")
            return {"status": "finished", "seed": cfg.train.seed}
        finally:
            with self.lock:
                self.running -= 1


def _cfg(seed, note=""):
    return RunConfig(train=TrainConfig(seed=seed), note=note)


def test_jobs_from_many_sessions_run_one_at_a_time_in_order(settings):
    runner = FakeRunner()
    q = JobQueue(runner)
    # several "browser sessions" submit at the same moment
    threads = [threading.Thread(target=q.submit, args=(_cfg(i), settings)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    positions = sorted(p for p in (q.position(j.id) for j in q.jobs()) if p is not None)
    assert positions[0] in (0, 1) and positions == list(range(positions[0], positions[0] + len(positions)))
    assert q.wait_idle(30)
    assert runner.max_running == 1
    assert runner.order == [j.config.train.seed for j in q.jobs()]  # first come, first served
    assert all(j.state == "finished" and j.run_id == f"run-{j.config.train.seed}" for j in q.jobs())


def test_stop_running_and_cancel_queued(settings):
    runner = FakeRunner(batches=500, delay=0.01)
    q = JobQueue(runner)
    a, b = q.submit(_cfg(1), settings), q.submit(_cfg(2), settings)
    deadline = time.time() + 10
    while q.get(a.id).state != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert q.position(a.id) == 0 and q.position(b.id) == 1
    assert q.stop(b.id) and q.get(b.id).state == "cancelled"
    time.sleep(0.05)
    assert q.stop(a.id)
    assert q.wait_idle(10)
    assert q.get(a.id).state == "interrupted" and q.get(a.id).progress["batch"] < 500
    assert runner.order == [1]  # the cancelled job never started
    assert not q.stop(a.id)  # already over


def test_a_failing_job_does_not_stop_the_queue(settings):
    q = JobQueue(FakeRunner(batches=2))
    bad, good = q.submit(_cfg(1, note="boom"), settings), q.submit(_cfg(2), settings)
    assert q.wait_idle(10)
    assert q.get(bad.id).state == "failed" and "vanished" in q.get(bad.id).error
    assert q.get(good.id).state == "finished"


def test_invalid_config_is_refused_at_submit(settings):
    q = JobQueue(FakeRunner())
    with pytest.raises(ConfigError):
        q.submit(RunConfig(train=TrainConfig(epochs=0)), settings)
    assert q.jobs() == []


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
