"""What a quiz question is, and the concept questions read from ``questions.yaml``.

Both kinds of question — written once in the YAML file, or computed from the class's runs (:mod:`core.quiz.from_runs`,
:mod:`core.quiz.from_search`) — are a :class:`Question`; a run-answered question whose data are missing is a
:class:`Skipped` with one line saying what to run first. The YAML file is for teachers to edit: a bad edit gives one
paragraph naming the file, the question and what is wrong, never a traceback.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import yaml

from core.errors import ConfigError

QUESTIONS_FILE = Path(__file__).with_name("questions.yaml")
# The pages a question may link to, by the name its file has in app_pages/ (a link opens app_pages/<name>.py).
PAGES = ("home", "train", "compare", "search", "look_inside", "quiz")
FIELDS = {"id", "question", "options", "correct", "explanation", "link"}


@dataclass(frozen=True)
class Link:
    """Where the figures behind an answer are shown: a page and the URL parameters that open the right view."""

    page: str  # one of PAGES
    label: str
    params: Dict[str, Union[str, List[str]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """ "/compare?compare_runs=a&compare_runs=b": the page's path with its parameters, for a sentence."""
        from urllib.parse import urlencode  # noqa: PLC0415 (lazy: only links with parameters need it)

        query = urlencode(self.params, doseq=True)
        return f"/{self.page}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: ``correct`` holds one or more of ``options`` (several: choose all that apply).
    ``id`` is stable: the same question about the same data has the same id in every session, so the class's
    answers pool (:mod:`core.quiz.tally`). ``photo``: a dataset photo the question is about (``root``, ``file``
    relative to it, its ``label``)."""

    id: str
    text: str
    options: Tuple[str, ...]
    correct: frozenset
    explanation: str
    link: Optional[Link] = None
    photo: Optional[Dict[str, str]] = None
    shuffle: bool = False  # shown in an order of its own per session (concept questions: the file lists the
    # right answer wherever its author put it, often first); run-answered ones keep their natural order

    def shown_options(self, session: str) -> Tuple[str, ...]:
        """The options in the order ``session`` sees them: the file's order, or (``shuffle``) a permutation seeded by
        the session and the question, so it stays put across reruns and differs between students."""
        if not self.shuffle:
            return self.options
        seed = int.from_bytes(hashlib.sha256(f"{session}/{self.id}".encode()).digest()[:8], "big")
        return tuple(random.Random(seed).sample(self.options, len(self.options)))

    @property
    def several(self) -> bool:
        return len(self.correct) > 1

    def is_right(self, chosen: Sequence[str]) -> bool:
        """Right when exactly the correct options are chosen."""
        return set(chosen) == set(self.correct)


@dataclass(frozen=True)
class Skipped:
    """A question that cannot be asked yet: its data are missing. ``reason``: one line saying what to run first."""

    id: str
    reason: str


def _problem(path: Path, where: str, what: str) -> ConfigError:
    return ConfigError(
        f"The quiz file {path} cannot be used: {where} {what}. Each question needs an id, a question, a list of "
        "options, the correct option(s) (copied exactly from the options), an explanation, and optionally a link "
        f"to a page ({', '.join(PAGES)}). Fix the file and reload the page."
    )


def _question(entry, n: int, path: Path, seen: set) -> Question:
    where = f"question {n}" + (f" (id {entry['id']!r})" if isinstance(entry, dict) and "id" in entry else "")
    if not isinstance(entry, dict):
        raise _problem(path, where, "is not a set of `key: value` lines")
    unknown = sorted(set(map(str, entry)) - FIELDS)
    missing = sorted(f for f in FIELDS - {"link"} if entry.get(f) in (None, "", []))
    if unknown or missing:
        parts = [f"unknown field(s) {', '.join(unknown)}"] * bool(unknown) + [f"no {', '.join(missing)}"] * bool(
            missing
        )
        raise _problem(path, where, "has " + " and ".join(parts))
    qid, options = str(entry["id"]), entry["options"]
    if qid in seen:
        raise _problem(path, where, "has the same id as an earlier question")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, (str, int, float)) for o in options):
        raise _problem(path, where, "needs a list of at least two options")
    options = [str(o) for o in options]
    if len(set(options)) != len(options):
        raise _problem(path, where, "lists the same option twice")
    correct = entry["correct"] if isinstance(entry["correct"], list) else [entry["correct"]]
    wrong = [str(c) for c in correct if str(c) not in options]
    if wrong:
        raise _problem(path, where, f"gives a correct answer that is not one of its options: {wrong[0]!r}")
    link = entry.get("link")
    if link is not None and link not in PAGES:
        raise _problem(path, where, f"links to {link!r}, which is not a page")
    seen.add(qid)
    return Question(
        id=qid,
        text=str(entry["question"]).strip(),
        options=tuple(options),
        correct=frozenset(str(c) for c in correct),
        explanation=str(entry["explanation"]).strip(),
        link=Link(link, f"Open the {link.replace('_', ' ').title()} page") if link else None,
        shuffle=True,
    )


def load_questions(path: Path = QUESTIONS_FILE) -> List[Question]:
    """The concept questions of ``path`` (a YAML list), in the file's order. Raises :class:`ConfigError`, one
    paragraph naming the file and the question, when the file cannot be read or a question is malformed."""
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"The quiz file {path} cannot be read ({e.strerror or e}).") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise _problem(path, "the YAML", f"is not valid at {at} ({getattr(e, 'problem', None) or e})") from e
    if not isinstance(entries, list) or not entries:
        raise _problem(path, "the file", "is not a list of questions (each one starting with `- id:`)")
    seen: set = set()
    return [_question(entry, n, path, seen) for n, entry in enumerate(entries, 1)]


def most(values: Dict[str, float], key=lambda v: v) -> frozenset:
    """The names whose value is the largest (ties: all of them), comparing ``key(value)`` (e.g. as shown)."""
    if not values:
        return frozenset()
    top = max(key(v) for v in values.values())
    return frozenset(name for name, v in values.items() if key(v) == top)
