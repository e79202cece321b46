"""Questions answered by the class's own race: the correct answer is read from the run store when the question is
asked, never written down in advance.

"Your race" is the newest launch (runs sharing ``config["group"]``) that has ended — nothing of it queued or
training — with at least two finished runs: the asking session's own newest such launch if it has one, else
anyone's. Each builder returns a :class:`Question` whose id names the launch (every student asking about the same
race answers the same question, and the teacher's chart pools them) or a :class:`Skipped` saying what to run first.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from core.models.regimes import REGIMES, display_name
from core.quiz.questions import Link, Question, Skipped, most
from core.runs.compare import seconds, shown_percent
from core.runs.predictions import load_predictions
from core.runs.store import RunRecord

RUN_A_RACE = "Run a race on the Train page first (Run all four), and let it finish."
# "How many times faster" is answered in bands: these edges, in times (a ratio below 1: transfer was not faster).
SPEEDUP_EDGES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
SPEEDUP_OPTIONS = 4  # bands offered, the right one among them


@dataclass
class Race:
    """One ended launch: its group id and its finished runs with a test accuracy, in launch order."""

    group: str
    runs: List[RunRecord]

    def by_regime(self) -> Dict[str, List[RunRecord]]:
        out: Dict[str, List[RunRecord]] = {}
        for r in self.runs:
            out.setdefault(r.config["model"]["regime"], []).append(r)
        return dict(sorted(out.items(), key=lambda kv: _regime_order(kv[0])))

    def mean(self, regime: str, field: str) -> Optional[float]:
        """The mean of ``summary[field]`` over the race's runs of ``regime`` (None when none has it)."""
        values = [r.summary.get(field) for r in self.by_regime().get(regime, [])]
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        return sum(values) / len(values) if values else None

    def compare_link(self, label: str = "See your race on the Compare page", **params) -> Link:
        return Link("compare", label, {"compare_runs": [r.run_id for r in self.runs], **params})


def _regime_order(regime: str) -> Tuple[int, str]:
    order = list(REGIMES)
    return (order.index(regime) if regime in order else len(order), regime)


def _finished(run: RunRecord) -> bool:
    return run.status == "finished" and isinstance(run.summary.get("test_acc"), (int, float))


def your_race(runs: Sequence[RunRecord], owner: str = "") -> Optional[Race]:
    """The race the questions are about (see the module's docstring), from the store's runs as listed; None when
    no launch has ended with two finished runs."""
    groups: Dict[str, List[RunRecord]] = {}
    for r in runs:
        if r.config.get("group"):
            groups.setdefault(r.config["group"], []).append(r)
    ended = {
        g: members
        for g, members in groups.items()
        if not any(r.active for r in members) and sum(_finished(r) for r in members) >= 2
    }
    if not ended:
        return None
    own = [g for g, members in ended.items() if owner and any(r.owner == owner for r in members)]
    group = max(own or ended)  # group ids sort by launch time
    members = sorted((r for r in ended[group] if _finished(r)), key=lambda r: (r.queued_at or 0, r.run_id))
    return Race(group, members)


def _id(kind: str, race: Race) -> str:
    return f"{kind}-{race.group}"


def best_regime_question(race: Optional[Race]) -> Union[Question, Skipped]:
    """Which regime reached the highest test accuracy in your race? Ties at the shown precision: all correct."""
    if race is None:
        return Skipped("race-best", RUN_A_RACE)
    accuracy = {display_name(regime): race.mean(regime, "test_acc") for regime in race.by_regime()}
    if len(accuracy) < 2:
        return Skipped("race-best", "Race at least two regimes on the Train page first (Run all four).")
    correct = most(accuracy, key=lambda a: float(shown_percent(a).rstrip("%")))
    figures = ", ".join(f"{name} {shown_percent(a)}" for name, a in accuracy.items())
    return Question(
        id=_id("race-best", race),
        text="Which regime reached the highest test accuracy in your race?",
        options=tuple(accuracy),
        correct=correct,
        explanation=f"Test accuracy in your race: {figures}. The test photos were never trained on, so this is how "
        "well each regime recognises new photos."
        + (" Several tie at the shown precision." if len(correct) > 1 else ""),
        link=race.compare_link(),
    )


def band_label(low: float, high: float) -> str:
    if low == 0:
        return f"Not faster: transfer took at least as long (less than {high:g}×)"
    if math.isinf(high):
        return f"More than {low:g}× faster"
    return f"{low:g}× to {high:g}× faster"


def speedup_bands(ratio: float, seed: str) -> Tuple[List[Tuple[float, float]], frozenset]:
    """:data:`SPEEDUP_OPTIONS` consecutive bands of :data:`SPEEDUP_EDGES` around ``ratio`` (where the right one sits
    among them depends on ``seed``, the same for the same race), and the indexes of the right one(s): the band holding
    the ratio as shown (one decimal), both bands when it is shown exactly at an edge."""
    edges = [0.0, *SPEEDUP_EDGES, math.inf]
    bands = list(zip(edges[:-1], edges[1:]))
    shown = round(ratio, 1)
    right = [i for i, (lo, hi) in enumerate(bands) if lo <= shown <= hi]
    shift = int(hashlib.sha1(seed.encode()).hexdigest(), 16) % SPEEDUP_OPTIONS
    start = max(0, min(right[0] - shift, len(bands) - SPEEDUP_OPTIONS))
    offered = bands[start : start + SPEEDUP_OPTIONS]
    return offered, frozenset(i - start for i in right if start <= i < start + SPEEDUP_OPTIONS)


def speedup_question(race: Optional[Race]) -> Union[Question, Skipped]:
    """How many times faster was transfer than full fine-tuning (mean training time, as Compare shows it)?"""
    if race is None:
        return Skipped("race-speedup", RUN_A_RACE)
    full, transfer = race.mean("full", "train_seconds"), race.mean("transfer", "train_seconds")
    if not full or not transfer:
        return Skipped(
            "race-speedup",
            f"Race {display_name('transfer')} and {display_name('full')} on the Train page first (Run all four).",
        )
    ratio = full / transfer
    bands, right = speedup_bands(ratio, race.group)
    options = tuple(band_label(lo, hi) for lo, hi in bands)
    return Question(
        id=_id("race-speedup", race),
        text=f"In your race, how many times faster did {display_name('transfer')} train than {display_name('full')}?",
        options=options,
        correct=frozenset(options[i] for i in right),
        explanation=f"{display_name('transfer')} trained in {seconds(transfer)}, {display_name('full')} in "
        f"{seconds(full)}: {ratio:.1f}× {'faster' if ratio >= 1 else 'as fast'}. Transfer learning computes the "
        "frozen ImageNet features once per photo and then trains only the last layer; fine-tuning everything runs "
        "the whole network forwards and backwards for every photo, every epoch.",
        link=race.compare_link(),
    )


CONFUSED_REGIMES = ("finetune", "full")  # "the fine-tuned model": the first of these the race has


def confused_class_question(race: Optional[Race]) -> Union[Question, Skipped]:
    """Which class did the fine-tuned model get wrong most often on its test photos? Ties: all correct."""
    if race is None:
        return Skipped("race-confused", RUN_A_RACE)
    by_regime = race.by_regime()
    regime = next((r for r in CONFUSED_REGIMES if r in by_regime), None)
    if regime is None:
        return Skipped("race-confused", f"Race {display_name('finetune')} on the Train page first (Run all four).")
    run = by_regime[regime][0]
    preds = load_predictions(run.dir)
    if preds is None or not preds.n:
        return Skipped("race-confused", f"Your race's {display_name(regime)} run has no saved test predictions: "
                       "run a new race on the Train page.")  # fmt: skip
    cm = preds.confusion()
    wrong = {c: sum(cm[i]) - cm[i][i] for i, c in enumerate(preds.classes)}
    if not any(wrong.values()):
        return Skipped("race-confused", f"Your race's {display_name(regime)} model got every test photo right: "
                       "race on a harder dataset (Flowers) to see its mistakes.")  # fmt: skip
    correct = most(wrong)
    details = []
    for i, c in enumerate(preds.classes):
        if c in correct:
            mistaken = max((j for j in range(len(cm)) if j != i), key=lambda j: cm[i][j])
            details.append(f"{wrong[c]} of its {sum(cm[i])} {c} photos wrong, most often taken for "
                           f"{preds.classes[mistaken]}")  # fmt: skip
    others = ", ".join(f"{c} {n}" for c, n in wrong.items() if c not in correct)
    return Question(
        id=f"race-confused-{run.run_id}",
        text=f"Which class did the {display_name(regime)} model of your race get wrong most often on its test photos?",
        options=tuple(preds.classes),
        correct=correct,
        explanation=f"{display_name(regime)}: {'; '.join(details)}"
        + (f" (mistakes in the other classes: {others})" if others else "")
        + ". The confusion matrix on Compare shows every mistake, with the photos.",
        link=Link(
            "compare", "See its confusion matrix on Compare", {"compare_runs": [run.run_id], "compare_tab": "confusion"}
        ),
    )


def race_questions(runs: Sequence[RunRecord], owner: str = "") -> List[Union[Question, Skipped]]:
    """Every question on your race (see :func:`your_race`), asked or skipped."""
    race = your_race(runs, owner)
    return [best_regime_question(race), speedup_question(race), confused_class_question(race)]
