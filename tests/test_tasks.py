"""Background tasks: a page rerun (its poll raising) never throws away running work."""

from __future__ import annotations

import threading

import pytest

from core.app.tasks import TaskRunner
from core.errors import DataError


def test_a_rerun_finds_the_running_task_and_its_result():
    runner = TaskRunner()
    release = threading.Event()
    calls = []

    def work(progress):
        calls.append(1)
        progress(1, 4, "step")
        release.wait(10)
        progress(4, 4, "step")
        return "index"

    task = runner.start("k", work)

    class Rerun(BaseException):  # what Streamlit raises inside a script that is being rerun
        pass

    def interrupted(t):
        raise Rerun

    with pytest.raises(Rerun):
        runner.wait(task, interrupted, grace=0.05)
    again = runner.start("k", work)  # the rerun asks again: same task, not a second build
    assert again is task and calls == [1]
    seen = []
    release.set()
    assert runner.wait(again, lambda t: seen.append((t.done, t.total, t.message))) == "index"
    assert task.fraction == 1.0 and calls == [1]
    assert runner.run("k", work) == "index" and calls == [1, 1]  # finished tasks are forgotten: asked again, done again


def test_errors_reach_the_waiter_and_quick_work_shows_no_progress():
    runner = TaskRunner()

    def bad(progress):
        raise DataError("no images here")

    with pytest.raises(DataError, match="no images here"):
        runner.run("bad", bad)
    polled = []
    assert runner.run("quick", lambda progress: 42, lambda t: polled.append(t)) == 42
    assert polled == []  # done within the grace period: no progress bar flashes up
