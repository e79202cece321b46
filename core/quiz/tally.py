"""The class's answers, for the teacher's live chart: one answer per browser session per question.

Held once per server process (the Quiz page keeps one :class:`Tally` in ``st.cache_resource``) and shared by every
session's thread, hence the lock. A session answering again replaces its answer. Nothing is written to disk: a
restart of the server starts a new count, as a new lesson would.
"""

from __future__ import annotations

import threading
from typing import Dict, Iterable, Sequence, Tuple


class Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: Dict[str, Dict[str, Tuple[str, ...]]] = {}  # question id -> session -> options chosen

    def record(self, question_id: str, session: str, chosen: Iterable[str]) -> None:
        """``session``'s answer to the question (replacing an earlier one)."""
        with self._lock:
            self._answers.setdefault(question_id, {})[session] = tuple(chosen)

    def answers(self, question_id: str) -> int:
        """How many sessions answered the question."""
        with self._lock:
            return len(self._answers.get(question_id, {}))

    def counts(self, question_id: str, options: Sequence[str]) -> Dict[str, int]:
        """``{option: sessions that chose it}``, in the options' order (a session may choose several)."""
        with self._lock:
            chosen = list(self._answers.get(question_id, {}).values())
        return {o: sum(o in c for c in chosen) for o in options}

    def right(self, question_id: str, correct: Iterable[str]) -> int:
        """How many sessions chose exactly the correct options."""
        correct = set(correct)
        with self._lock:
            return sum(set(c) == correct for c in self._answers.get(question_id, {}).values())
