"""Quiz: what the course taught, and what the class's own runs showed — with a score at the end.

Concept questions come from ``core/quiz/questions.yaml`` (a teacher edits it); the others are answered by the run
store and the Search page's saved indexes when the page is drawn (``core.quiz``), or skipped with what to run first.
Answers and the score live in this browser session; the class's answers are counted once per server
(``core.quiz.tally``) and drawn, live, for the teacher.
"""

from pathlib import Path

import streamlit as st

from core.app.photos import KeptPhoto
from core.app.plots import answers_figure
from core.app.search import QUERY_KEY, class_key, file_key
from core.errors import TransferLabError
from core.quiz.from_runs import race_questions
from core.quiz.from_search import indexes_stamp, neighbours_question
from core.quiz.questions import QUESTIONS_FILE, Question, Skipped, load_questions
from core.quiz.tally import Tally
from core.runs.listing import shared_listing
from core.settings import Settings

settings = Settings.from_env()
ANSWERS, ROUND = "quiz_answers", "quiz_round"  # {question id: {"chosen": [...], "right": bool}}; bumped by Start again
CHART_REFRESH_SECONDS = 2


@st.cache_resource(show_spinner=False)
def shared_tally(runs_dir: str) -> Tally:
    """The class's answers: one tally per run store for the whole server process, every session adds to it."""
    return Tally()


def class_tally() -> Tally:
    return shared_tally(str(settings.runs_dir))


@st.cache_data(show_spinner=False)
def concept_questions(stamp: int) -> list:
    """``stamp``: the file's mtime, so a teacher's edit shows at the next rerun."""
    return load_questions(QUESTIONS_FILE)


@st.cache_data(ttl=60, max_entries=16, show_spinner="Reading the search indexes…")
def search_question(root: str | None, stamp: tuple):
    """``stamp``: the saved indexes' files (:func:`indexes_stamp`), so a build on Search shows at once."""
    return neighbours_question(root, settings)


def shown(q: Question) -> tuple:
    """The options in this session's order (concept questions are shuffled per session, the same on every rerun)."""
    return q.shown_options(st.session_state.get("owner", ""))


def chosen_options(q: Question, keys: list) -> list:
    if q.several:
        return [o for o, k in zip(shown(q), keys) if st.session_state.get(k)]
    value = st.session_state.get(keys[0])
    return [value] if value is not None else []


def check(q: Question, keys: list) -> None:
    chosen = chosen_options(q, keys)
    if chosen:
        st.session_state[ANSWERS][q.id] = {"chosen": chosen, "right": q.is_right(chosen)}
        class_tally().record(q.id, st.session_state.get("owner", ""), chosen)


def start_again() -> None:
    st.session_state[ANSWERS] = {}
    st.session_state[ROUND] = st.session_state.get(ROUND, 0) + 1  # new widget keys: nothing chosen


@st.fragment(run_every=CHART_REFRESH_SECONDS)
def class_answers(q: Question) -> None:
    """The teacher's view of one question: how many answered, how many right, and the chart of their choices."""
    tally = class_tally()
    n = tally.answers(q.id)
    st.caption(f"🎓 The class: {n} answered, {tally.right(q.id, q.correct)} right (green: correct).")
    if n:
        st.plotly_chart(answers_figure(tally.counts(q.id, q.options), q.correct), key=f"quiz_chart-{q.id}")


def search_with(q: Question) -> None:
    """Open the Search page with the question's photo as its query (as the page's own "more like this" does)."""
    root, file, label = q.photo["root"], q.photo["file"], q.photo["label"]
    dataset = (st.session_state.get("dataset") or {}).get("label", "")
    st.session_state[class_key(root)] = label
    st.session_state[file_key(root, label)] = file
    st.session_state[QUERY_KEY] = KeptPhoto.dataset_photo(root, file, label, dataset)
    st.switch_page("app_pages/search.py")


def ask(n: int, q: Question, show_class: bool) -> None:
    answer = st.session_state[ANSWERS].get(q.id)
    tag = f"quiz-{st.session_state.get(ROUND, 0)}-{q.id}"
    with st.container(border=True, key=f"quiz_box-{q.id}"):
        st.markdown(f"**{n}. {q.text}**")
        if q.photo:
            path = Path(q.photo["root"]) / q.photo["file"]
            if path.is_file():
                st.image(str(path), caption=f"{q.photo['label']}: {Path(q.photo['file']).name}", width=240)
        if q.several:
            st.caption("Choose all that apply.")
            keys = [f"{tag}-{i}" for i in range(len(q.options))]
            for option, key in zip(shown(q), keys):
                st.checkbox(option, key=key, disabled=answer is not None)
        else:
            keys = [tag]
            st.radio("Your answer", shown(q), index=None, key=tag, disabled=answer is not None,
                     label_visibility="collapsed")  # fmt: skip
        if answer is None:
            st.button("Check", key=f"{tag}-check", on_click=check, args=(q, keys), disabled=not chosen_options(q, keys))
        else:
            right = ", ".join(f"**{o}**" for o in shown(q) if o in q.correct)
            if answer["right"]:
                st.success(f"Right. {q.explanation}", icon="✅")
            else:
                st.error(f"Not quite: the answer is {right}. {q.explanation}", icon="❌")
            if q.link is not None and q.photo is not None and q.link.page == "search":
                if st.button(f"🔎 {q.link.label}", key=f"{tag}-search"):
                    search_with(q)
            elif q.link is not None:
                st.page_link(f"app_pages/{q.link.page}.py", label=q.link.label, icon="➡️",
                             query_params=q.link.params or None)  # fmt: skip
        if show_class:
            class_answers(q)


# ------------------------------------------------------------------------------------------------- page

st.title("🧠 Quiz")
st.caption(
    "What the course taught, and what your class's own runs showed. Choose, press *Check*, read why. "
    "Your score is kept in this browser tab only."
)
st.session_state.setdefault(ANSWERS, {})
try:
    concepts = concept_questions(QUESTIONS_FILE.stat().st_mtime_ns)
except TransferLabError as e:
    st.error(str(e))
    concepts = []
dataset = st.session_state.get("dataset") or {}
runs = shared_listing(settings.runs_dir).runs()
root = dataset.get("root")
try:
    computed = [
        *race_questions(runs, st.session_state.get("owner", "")),
        search_question(root, indexes_stamp(root, settings)),
    ]
except TransferLabError as e:  # a dataset folder that went away meanwhile, an unreadable index…
    computed = [Skipped("search-neighbours", str(e))]
from_runs = [q for q in computed if isinstance(q, Question)]
skipped = [q for q in computed if isinstance(q, Skipped)]
questions = concepts + from_runs

teacher = bool(st.session_state.get("teacher"))
show_class = teacher and st.toggle("🎓 Show the class's answers (live)", value=True, key="quiz_show_class")
answered = [st.session_state[ANSWERS][q.id] for q in questions if q.id in st.session_state[ANSWERS]]
score = sum(a["right"] for a in answered)
st.progress(len(answered) / max(len(questions), 1),
            text=f"Score: {score} of {len(answered)} answered right · {len(questions)} questions")  # fmt: skip

st.subheader("What the course taught")
for n, q in enumerate(concepts, 1):
    ask(n, q, show_class)

st.subheader("What your class's runs showed")
st.caption("The right answers below are read from the run store and the search indexes just now.")
for n, q in enumerate(from_runs, len(concepts) + 1):
    ask(n, q, show_class)
if skipped:
    st.info(
        "Not asked yet, their data are missing:\n\n" + "\n".join(f"- {s.reason}" for s in skipped),
        icon="⏭️",
    )

if questions and len(answered) == len(questions):
    st.success(f"🎉 Final score: **{score} of {len(questions)}** ({score / len(questions):.0%}).")
    st.button("🔁 Start again", on_click=start_again, key="quiz_start_again")
