"""One progress bar over background tasks (:mod:`core.app.tasks`), with words and the time left."""

from __future__ import annotations

import streamlit as st

from core.app.search import build_progress
from core.progress import Pace


class StepBar:
    """One progress bar over several background tasks waited for one after another: the step, the counts and
    the time left (the bar appears only if a task is slow enough to be polled)."""

    def __init__(self, steps: int, title: str = ""):
        self.holder, self.steps, self.title, self.bar = st.empty(), steps, title, None

    def poller(self, step: int, label: str, unit: str = "photos"):
        """A task's poll for step ``step`` (from 1), named ``label``, counting ``unit``."""
        pace = Pace()

        def poll(task):
            if self.bar is None:
                self.bar = self.holder.progress(0.0, text=self.title)
            left = pace.time_left(task.done, task.total, task.message)
            fraction, text = build_progress(step, self.steps, label, task.done, task.total, task.message, left, unit)
            self.bar.progress(fraction, text=f"{self.title} {text}" if self.title else text)

        return poll

    def close(self) -> None:
        self.holder.empty()
