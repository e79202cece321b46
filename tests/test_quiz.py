"""The quiz: the concept questions load and are well-formed, a bad edit says where; questions answered by a race
really trained here give the answers its summaries imply; missing data skip with one line; the page scores and
shows the teacher the class's answers."""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.models.regimes import display_name
from core.quiz import from_runs
from core.quiz.from_runs import RUN_A_RACE, race_questions, speedup_bands, your_race
from core.quiz.from_search import SEARCH_FIRST, neighbours_question
from core.quiz.questions import PAGES, Question, Skipped, load_questions
from core.quiz.tally import Tally
from core.runs.store import RunStore
from core.settings import ENV_CACHE_DIR, ENV_RUNS_DIR, Settings
from tests.helpers import noise_folder, open_app_page

CONCEPTS = load_questions()
RACE_REGIMES = ("transfer", "finetune", "full")


# ------------------------------------------------------------------------------------------- concept questions


def test_the_course_s_closing_quiz_is_covered():
    assert len(CONCEPTS) >= 10
    assert len({q.id for q in CONCEPTS}) == len(CONCEPTS)
    text = " ".join(f"{q.text} {' '.join(q.options)}".lower() for q in CONCEPTS)
    for topic in ("imagenet", "transfer", "fine-tune", "frozen", "flowers", "l1", "cosine", "deep features",
                  "vector", "cnn", "mlp", "augmentation"):  # fmt: skip
        assert topic in text, topic


@pytest.mark.parametrize("q", CONCEPTS, ids=[q.id for q in CONCEPTS])
def test_each_concept_question_is_well_formed(q):
    assert q.text.endswith("?") and len(q.options) >= 2 and len(set(q.options)) == len(q.options)
    assert q.correct and q.correct <= set(q.options)
    assert len(q.explanation) > 40
    assert q.link is None or q.link.page in PAGES and (Path("app_pages") / f"{q.link.page}.py").is_file()
    assert q.is_right(sorted(q.correct)) and not q.is_right([o for o in q.options if o not in q.correct])


GOOD = """
- id: a
  question: A?
  options: [x, y]
  correct: x
  explanation: because
"""


@pytest.mark.parametrize(
    "second, says",
    [
        ("- id: b\n  question: B?\n  options: [x, y]\n  correct: z\n  explanation: e\n", "not one of its options: 'z'"),
        ("- id: b\n  question: B?\n  options: [x]\n  correct: x\n  explanation: e\n", "at least two options"),
        ("- id: b\n  question: B?\n  options: [x, y]\n  correct: x\n", "no explanation"),
        ("- id: b\n  questoin: B?\n  question: B?\n  options: [x, y]\n  correct: x\n  explanation: e\n",
         "unknown field(s) questoin"),
        ("- id: a\n  question: B?\n  options: [x, y]\n  correct: x\n  explanation: e\n", "same id"),
        ("- id: b\n  question: B?\n  options: [x, y]\n  correct: x\n  explanation: e\n  link: nowhere\n", "not a page"),
    ],
)  # fmt: skip
def test_a_bad_edit_names_the_file_the_question_and_the_mistake(tmp_path, second, says):
    path = tmp_path / "questions.yaml"
    path.write_text(GOOD + second)
    with pytest.raises(ConfigError) as e:
        load_questions(path)
    message = str(e.value)
    assert str(path) in message and "question 2" in message and says in message, message
    assert "\n" not in message  # one paragraph


def test_invalid_yaml_says_where(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text(GOOD + "- id: b\n  question: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_questions(path)
    path.write_text("just: a mapping\n")
    with pytest.raises(ConfigError, match="not a list of questions"):
        load_questions(path)


# --------------------------------------------------------------------------------------- run-answered questions


@pytest.fixture(scope="module")
def race(tiny_folder, session_cache, tmp_path_factory):
    """A tiny race really trained: transfer, finetune and full, 2 epochs at 32 px, launched together. Yields the
    settings of its store and the summaries by regime."""
    from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from core.training.train import train_run

    settings = Settings(cache_dir=session_cache, runs_dir=tmp_path_factory.mktemp("quiz") / "runs")
    summaries = {}
    for regime in RACE_REGIMES:
        cfg = RunConfig(
            data=DataConfig(source=str(tiny_folder), img_size=32),
            model=ModelConfig(backbone="efficientnet_lite0", regime=regime),
            train=TrainConfig(epochs=2, lr=1e-3),
            group="g-00000000000000000001-quiz",
        )
        summaries[regime] = train_run(cfg, settings)
    return settings, summaries


def _asked(settings: Settings, owner: str = "") -> dict:
    asked = race_questions(RunStore(settings.runs_dir).list_runs(), owner)
    return dict(zip(("race-best", "race-speedup", "race-confused"), asked))


@pytest.mark.slow
def test_race_questions_have_the_answers_the_store_implies(race):
    settings, summaries = race
    asked = _asked(settings)
    assert all(isinstance(q, Question) for q in asked.values()), asked

    best = asked["race-best"]
    accuracy = {display_name(r): s["test_acc"] for r, s in summaries.items()}
    assert set(best.options) == set(accuracy)
    top = max(round(a * 100, 1) for a in accuracy.values())
    assert best.correct == {n for n, a in accuracy.items() if round(a * 100, 1) == top}
    assert best.link.page == "compare" and sorted(best.link.params["compare_runs"]) == sorted(
        s["run_id"] for s in summaries.values()
    )

    speed = asked["race-speedup"]
    ratio = summaries["full"]["train_seconds"] / summaries["transfer"]["train_seconds"]
    assert f"{ratio:.1f}×" in speed.explanation
    for option in speed.options:  # the right band(s) hold the measured ratio as shown; the others do not
        numbers = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)×", option)]
        low, high = (0.0, numbers[0]) if option.startswith("Not faster") else (
            (numbers[0], math.inf) if option.startswith("More than") else tuple(numbers))  # fmt: skip
        assert (option in speed.correct) == (low <= round(ratio, 1) <= high), (option, ratio)

    confused = asked["race-confused"]
    cm = summaries["finetune"]["confusion"]  # the summary's own confusion matrix, not predictions.json
    classes = summaries["finetune"]["classes"]
    wrong = {c: sum(cm[i]) - cm[i][i] for i, c in enumerate(classes)}
    assert set(confused.options) == set(classes)
    assert confused.correct == {c for c, n in wrong.items() if n == max(wrong.values())}
    assert confused.link.params == {"compare_runs": [summaries["finetune"]["run_id"]], "compare_tab": "confusion"}


@pytest.mark.slow
def test_a_tie_makes_every_tied_regime_correct(race):
    settings, summaries = race
    runs = RunStore(settings.runs_dir).list_runs()
    top = max(runs, key=lambda r: r.summary["test_acc"])
    other = next(r for r in runs if r is not top)
    acc = top.summary["test_acc"]  # the other one ties with the best; the rest falls clearly behind
    tied = [r if r is top else dataclasses.replace(r, summary={**r.summary, "test_acc": acc if r is other else acc / 2})
            for r in runs]  # fmt: skip
    best = from_runs.best_regime_question(your_race(tied))
    assert best.several and best.correct == {
        display_name(top.config["model"]["regime"]),
        display_name(other.config["model"]["regime"]),
    }


@pytest.mark.slow
def test_a_race_still_training_or_with_one_run_is_not_asked_about(race):
    settings, _ = race
    runs = RunStore(settings.runs_dir).list_runs()
    running = [dataclasses.replace(runs[0], status="running"), *runs[1:]]
    assert your_race(running) is None
    assert your_race(runs[:1]) is None
    assert your_race(runs).group == runs[0].config["group"]


def test_an_empty_store_skips_the_race_questions_with_one_line(settings):
    asked = race_questions(RunStore(settings.runs_dir).list_runs())
    assert len(asked) == 3 and all(isinstance(q, Skipped) and q.reason == RUN_A_RACE for q in asked)
    assert "\n" not in RUN_A_RACE and "Train page" in RUN_A_RACE


@pytest.mark.parametrize("ratio", [0.4, 1.0, 1.34, 5.0, 5.04, 7.3, 49.96, 240.0])
def test_speedup_bands_hold_the_ratio_as_shown(ratio):
    bands, right = speedup_bands(ratio, seed="g-1")
    shown = round(ratio, 1)
    assert len(bands) == from_runs.SPEEDUP_OPTIONS and right
    assert right == {i for i, (lo, hi) in enumerate(bands) if lo <= shown <= hi}
    assert len(right) == (2 if shown in from_runs.SPEEDUP_EDGES else 1)  # exactly at an edge: both bands


# ---------------------------------------------------------------------------------------- search-answered question


def test_without_saved_indexes_the_search_question_is_skipped(settings, tmp_path):
    folder = noise_folder(tmp_path / "photos")
    assert neighbours_question(str(folder), settings) == Skipped("search-neighbours", SEARCH_FIRST)
    assert "Search page" in neighbours_question(None, settings).reason


@pytest.mark.slow
def test_the_search_question_counts_same_class_neighbours_per_method(settings, tmp_path):
    from core.retrieval.index import clear_memory_cache, open_index

    folder = noise_folder(tmp_path / "photos", per_class=6)
    built = {m: open_index(folder, m, settings=settings)[0] for m in ("l1", "cosine", "deep")}
    clear_memory_cache()  # the question reads them from disk
    q = neighbours_question(str(folder), settings, k=4)
    assert isinstance(q, Question) and q.photo["root"] == str(folder)
    rel, label = q.photo["file"], q.photo["label"]
    assert rel.split("/")[0] == label
    found = {}  # each method searched as the Search page does: the photo embedded again, itself left out
    for index in built.values():
        result = index.search(folder / rel, k=4, exclude_file=rel)
        found[index.method.display] = sum(n.label == label for n in result.neighbours)
    assert set(q.options) == set(found)
    assert q.correct == {m for m, n in found.items() if n == max(found.values())}
    assert all(f"{m} {n}" in q.explanation for m, n in found.items())
    assert neighbours_question(str(folder), settings, k=4).id == q.id  # stable: the class's answers pool


# ----------------------------------------------------------------------------------------------------- tally


def test_the_tally_counts_one_answer_per_session_and_a_re_answer_replaces_it():
    tally = Tally()
    tally.record("q", "alice", ["x"])
    tally.record("q", "alice", ["y"])  # changed her mind
    tally.record("q", "bob", ["x", "y"])
    threads = [threading.Thread(target=tally.record, args=("q", f"s{i}", ["x"])) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tally.answers("q") == 22 and tally.answers("other") == 0
    assert tally.counts("q", ["x", "y", "z"]) == {"x": 21, "y": 2, "z": 0}
    assert tally.right("q", {"x"}) == 20 and tally.right("q", {"x", "y"}) == 1


def test_concept_options_are_shuffled_per_session_and_stay_put():
    for q in CONCEPTS:
        orders = {q.shown_options(f"session-{i}") for i in range(12)}
        assert len(orders) > 1 and all(sorted(o) == sorted(q.options) for o in orders), q.id
        assert q.shown_options("session-1") == q.shown_options("session-1")  # the same on every rerun
    firsts = [q.shown_options(f"session-{i}")[0] in q.correct for q in CONCEPTS for i in range(8)]
    assert 0.1 < sum(firsts) / len(firsts) < 0.6  # the right answer is not where the file put it (first)


# ------------------------------------------------------------------------------------------------------ page


def _answer(at, q: Question, options) -> None:
    owner = at.session_state["owner"] if "owner" in at.session_state else ""
    if q.several:
        for i, o in enumerate(q.shown_options(owner)):
            at.checkbox(key=f"quiz-0-{q.id}-{i}").set_value(o in options)
    else:
        at.radio(key=f"quiz-0-{q.id}").set_value(options[0])
    at.run()  # as a browser does on each choice: Check is enabled once something is chosen
    at.button(key=f"quiz-0-{q.id}-check").click().run()
    assert not at.exception, at.exception


def _texts(at) -> str:
    return " ".join([*(e.value for e in at.success), *(e.value for e in at.error), *(e.value for e in at.info)])


@pytest.fixture
def no_indexes(settings, tmp_path, monkeypatch):
    """A cache of its own, where no search index of the sample was saved by another test (the search question is
    then skipped, and only the concept questions are asked)."""
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))


def test_the_page_checks_answers_explains_them_and_keeps_the_score(no_indexes):
    at = open_app_page("app_pages/quiz.py")
    assert RUN_A_RACE in _texts(at) and SEARCH_FIRST in _texts(at)  # nothing to ask about the runs yet
    single = next(q for q in CONCEPTS if not q.several)
    several = next(q for q in CONCEPTS if q.several)
    _answer(at, single, sorted(single.correct))
    assert any(e.value == f"Right. {single.explanation}" and e.icon == "✅" for e in at.success)
    assert at.radio(key=f"quiz-0-{single.id}").disabled
    _answer(at, several, [o for o in several.options if o not in several.correct][:1])
    wrong = [e for e in at.error if several.explanation in e.value]
    assert len(wrong) == 1 and wrong[0].value.startswith("Not quite: the answer is") and wrong[0].icon == "❌"
    assert all(f"**{o}**" in wrong[0].value for o in several.correct)
    assert "Score: 1 of 2 answered right" in at.get("progress")[0].proto.text
    for q in CONCEPTS:
        if q.id not in (single.id, several.id):
            _answer(at, q, sorted(q.correct))
    assert f"Final score: **{len(CONCEPTS) - 1} of {len(CONCEPTS)}**" in _texts(at)
    at.button(key="quiz_start_again").click().run()
    assert "Score: 0 of 0 answered right" in at.get("progress")[0].proto.text
    assert not at.radio(key=f"quiz-1-{single.id}").disabled


def test_the_teacher_sees_the_class_s_answers(no_indexes, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_TEACHER_PASSWORD", "tulips")
    student = open_app_page("app_pages/quiz.py")
    assert not student.get("plotly_chart")  # a student sees no chart
    q = CONCEPTS[0]
    _answer(student, q, [q.options[-1]])
    teacher = open_app_page("app_pages/quiz.py", state={"teacher": True})
    assert teacher.toggle(key="quiz_show_class").value
    captions = [c.value for c in teacher.caption if c.value.startswith("🎓 The class:")]
    assert len(captions) == len(CONCEPTS)  # one per question (this store has no runs to ask about)
    assert captions[0].startswith("🎓 The class: 1 answered, 0 right"), captions  # the student's wrong answer
    assert all(c.startswith("🎓 The class: 0 answered") for c in captions[1:]), captions
    assert len(teacher.get("plotly_chart")) == 1  # only the answered question has a chart


@pytest.mark.slow
def test_the_page_asks_about_the_race_with_the_store_s_answer(race, monkeypatch):
    settings, summaries = race
    monkeypatch.setenv(ENV_RUNS_DIR, str(settings.runs_dir))
    at = open_app_page("app_pages/quiz.py")
    best = _asked(settings)["race-best"]
    _answer(at, best, sorted(best.correct))
    assert any(e.value == f"Right. {best.explanation}" for e in at.success)
    assert RUN_A_RACE not in _texts(at)
