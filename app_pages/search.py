"""Search: a photo in, its nearest neighbours out — by raw pixels (L1, cosine) and by deep features.

The indexes are built once per dataset and method (with a progress bar), saved in the cache and reused;
everything here comes from ``core.retrieval.index`` and ``core.retrieval.metrics``.
"""

import io
import random
from pathlib import Path

import pandas as pd
import streamlit as st

from core.app.plots import retrieval_quality_figure
from core.app.search import class_key, deep_sources, file_key, files_by_class, framed_thumbnail, root_tag
from core.app.tasks import shared_tasks
from core.data.decode import ImageDecodeError
from core.data.imagefolder import PHOTO_TYPES, scan_image_folder
from core.errors import TransferLabError
from core.retrieval.embedders import EmbedderConfig
from core.retrieval.index import IndexConfig, open_index
from core.retrieval.methods import METHODS
from core.retrieval.metrics import evaluate_index
from core.runs.predictions import load_photo
from core.settings import Settings

settings = Settings.from_env()
K_MAX = 24  # the most neighbours shown; leave-one-out rankings are computed (and saved) to this depth
THUMBS_PER_ROW = 3
THUMB_PX = 150
MATCH, OTHER = "#2ca02c", "#d9d9d9"
AUTO_MEASURE_UP_TO = 1000  # datasets this small get their precision@k measured without asking
COLUMN_HELP = {
    "l1": "Sum of absolute differences between the two photos' pixels (86×128, 0–255). "
    "Shown as the mean difference per pixel value: **lower is closer**.",
    "cosine": "Angle between the two photos' pixel vectors: the same picture brighter or darker still matches. "
    "**Higher is closer** (1 = identical up to brightness).",
    "deep": "Angle between what the network *sees*: pooled features of a pretrained CNN. **Higher is closer**.",
}


@st.cache_data(ttl=30, show_spinner=False)
def cached_files_by_class(root: str) -> dict:
    return files_by_class(root)


@st.cache_data(max_entries=1024, show_spinner=False)
def cached_thumbnail(path: str, colour: str, stamp: int) -> bytes:
    """``stamp``: the file's mtime, so edits show."""
    return framed_thumbnail(path, colour, THUMB_PX)


def open_indexes(root: str, deep_cfg: EmbedderConfig) -> dict:
    """``{method: (index, report) or error message}``. Building runs as a background task, so a click
    during a first build does not throw the work away: the rerun finds the task and shows its progress."""
    holder = st.empty()
    shown = {"bar": None}
    out = {}
    try:
        listing = scan_image_folder(Path(root), min_classes=1)  # once for all three methods
    except TransferLabError as e:
        return {method: str(e) for method in METHODS}
    for method, spec in METHODS.items():
        cfg = deep_cfg if method == "deep" else EmbedderConfig()

        def poll(task, spec=spec):
            if shown["bar"] is None:
                shown["bar"] = holder.progress(0.0, text="Building the search indexes (once; saved for next time)…")
            counts = f" {task.done:,} / {task.total:,}" if task.total else ""
            shown["bar"].progress(task.fraction, text=f"{spec.display}: {task.message}{counts}")

        def build(progress, method=method, cfg=cfg):
            return open_index(Path(root), method, cfg, settings=settings, on_progress=progress, listing=listing)

        try:
            out[method] = shared_tasks().run(f"index|{root}|{method}|{cfg}", build, poll)
        except TransferLabError as e:
            out[method] = str(e)
    holder.empty()
    return out


def choose_query(root: str, classes: list):
    """(source, name, true class or None, dataset file or None); None when there is no usable query."""
    up = st.file_uploader(
        "Upload a photo to search with (JPEG, PNG, WebP…; any size)", type=PHOTO_TYPES, key="search_upload"
    )
    if up is not None:
        truth = st.selectbox(
            "What is in the photo? (optional: highlights the neighbours of that class)",
            ["", *classes],
            format_func=lambda c: c or "— don't know —",
            key="search_truth",
        )
        return io.BytesIO(up.getvalue()), up.name, truth or None, None
    by_class = cached_files_by_class(root)
    cls_key = class_key(root)

    def pick_random(rng=random) -> None:
        cls = rng.choice([c for c in classes if by_class.get(c)])
        st.session_state[cls_key] = cls
        st.session_state[file_key(root, cls)] = rng.choice(by_class[cls])

    if cls_key not in st.session_state:  # arrive with a photo already searched
        pick_random(random.Random(0))
    st.caption("…or pick one from the dataset (it is left out of its own results):")
    c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="bottom")
    cls = c1.selectbox("Class", classes, key=cls_key)
    files = by_class.get(cls, [])
    if not files:
        return None
    rel = c2.selectbox("Photo", files, key=file_key(root, cls), format_func=lambda f: Path(f).name)
    c3.button("🎲 Random", on_click=pick_random, key="search_random", width="stretch")
    return Path(root) / rel, Path(rel).name, cls, rel


def neighbour_grid(index, result, truth) -> None:
    rows = [result.neighbours[i : i + THUMBS_PER_ROW] for i in range(0, len(result.neighbours), THUMBS_PER_ROW)]
    for row in rows:
        cols = st.columns(THUMBS_PER_ROW)
        for col, n in zip(cols, row):
            same = truth is not None and n.label == truth
            caption = (
                f"{n.rank}. {'✅ ' if same else ''}**{n.label}**  \n"
                f"{index.method.format_score(n.score, index.embedder.dim)}"
            )
            try:
                col.image(
                    cached_thumbnail(n.path, MATCH if same else OTHER, Path(n.path).stat().st_mtime_ns),
                    caption=caption,
                    width="stretch",
                )
            except (OSError, ImageDecodeError):  # moved, deleted or damaged since the index was built
                col.caption(f"{caption} — the file is no longer readable at {n.path}")


def results_section(opened: dict, source, name: str, truth, own_file, k: int) -> None:
    results = {}
    for method, got in opened.items():
        if isinstance(got, tuple):
            try:
                results[method] = got[0].search(source, k, exclude_file=own_file, name=name)
            except TransferLabError as e:
                st.error(str(e))
                return
    left, right = st.columns([1, 3], vertical_alignment="center")
    with left:
        if hasattr(source, "seek"):
            source.seek(0)
        shown = load_photo(source, name)
        shown.thumbnail((640, 640))  # an upload may be 100 megapixels: send the browser a small copy
        st.image(shown, caption=f"Query: {name}" + (f" — {truth}" if truth else ""), width="stretch")
    with right:
        if truth is not None and results:
            cols = st.columns(len(results))
            for col, (method, r) in zip(cols, results.items()):
                same = sum(n.label == truth for n in r.neighbours)
                col.metric(f"{METHODS[method].display}: same class", f"{same} / {len(r.neighbours)}")
        times = " · ".join(f"{METHODS[m].display} {r.seconds * 1000:.0f} ms" for m, r in results.items())
        st.caption(f"⏱ Query time (embedding the photo + searching the index): {times}")
    columns = st.columns(len(opened), gap="large")
    for col, (method, got) in zip(columns, opened.items()):
        with col:
            st.markdown(f"#### {METHODS[method].display}", help=COLUMN_HELP[method])
            if not isinstance(got, tuple):
                st.error(got)
                continue
            index, _ = got
            st.caption(
                f"{index.embedder.description} · {len(index):,} images · {results[method].seconds * 1000:.0f} ms"
            )
            neighbour_grid(index, results[method], truth)


def quality_section(opened: dict, root: str, k: int) -> None:
    st.subheader("📏 Which method finds photos of the same class?")
    ready = {m: got[0] for m, got in opened.items() if isinstance(got, tuple)}
    if not ready:
        return
    n = len(next(iter(ready.values())))
    measure_key = f"search_measure-{root_tag(root)}"
    known = all(ix.has_leave_one_out(K_MAX) for ix in ready.values())
    if not (known or n <= AUTO_MEASURE_UP_TO or st.session_state.get(measure_key)):
        st.caption(
            f"Every one of the {n:,} images searches for its {K_MAX} nearest neighbours among the others "
            f"(leave-one-out), once per method; the result is saved for next time."
        )
        st.button(
            "📏 Measure precision@k of each method",
            key="search_measure_button",
            on_click=lambda: st.session_state.update({measure_key: True}),
        )
        return
    holder = st.empty()
    shown = {"bar": None}
    rows = []
    for method, index in ready.items():

        def poll(task):
            shown["bar"] = shown["bar"] or holder.progress(0.0)
            shown["bar"].progress(task.fraction, text=f"{task.message}: {task.done:,} / {task.total or 0:,}")

        depth = min(K_MAX, len(index) - 1)
        shared_tasks().run(
            f"loo|{index.path}|{depth}", lambda progress, ix=index, d=depth: ix.leave_one_out(d, progress), poll
        )
        q = evaluate_index(index, k)
        rows.append(
            {
                "method": method,
                "label": METHODS[method].display,
                "k": q.k,
                "precision_at_k": q.precision_at_k,
                "map_at_k": q.map_at_k,
                "chance": q.chance,
            }
        )
    holder.empty()
    left, right = st.columns([3, 2])
    left.plotly_chart(
        retrieval_quality_figure(rows, chance=rows[0]["chance"]), width="stretch", key="search_quality_chart"
    )
    with right:
        table = pd.DataFrame(
            [
                {"method": r["label"], f"precision@{r['k']}": r["precision_at_k"], f"mAP@{r['k']}": r["map_at_k"]}
                for r in rows
            ]
        )
        st.dataframe(
            table.style.format({c: "{:.1%}" for c in table.columns[1:]}),
            hide_index=True,
            width="stretch",
            key="search_quality_table",
        )
        best = max(rows, key=lambda r: r["precision_at_k"])
        why = (
            ": raw pixels see colours and layout, deep features see petals and shapes"
            if best["method"] == "deep"
            else ""
        )
        st.markdown(
            f"Each of the {n:,} images searched for its {rows[0]['k']} nearest *other* images. **precision@k**: the "
            f"share of those neighbours in the query's class (random picks would get {rows[0]['chance']:.0%}). "
            f"**mAP@k** also rewards putting them first. **{best['label']}** wins here{why}."
        )


st.title("🔎 Search")
st.markdown(
    "**Find similar photos three ways.** Raw pixels compare colours where they sit in the picture; "
    "deep features compare what a network trained on ImageNet recognises in it."
)

dataset = st.session_state.get("dataset")
if not dataset:
    st.warning("Choose a dataset in the sidebar: its photos are what the search looks through.")
    st.stop()

sources = deep_sources(settings)
keys = list(sources)
sidebar_key = f"imagenet:{st.session_state.get('backbone')}"
controls = st.columns([3, 2], vertical_alignment="bottom")
deep_key = controls[0].selectbox(
    "Deep features from",
    keys,
    format_func=lambda key: sources[key][0],
    index=keys.index(sidebar_key) if sidebar_key in keys else 0,
    key="search_deep",
    help="A fine-tuned run's network has learnt these classes: compare its neighbourhoods with the ImageNet ones.",
)
k = controls[1].slider("Neighbours (k)", 1, K_MAX, 8, key="search_k")

opened = open_indexes(dataset["root"], sources[deep_key][1])
query = choose_query(dataset["root"], dataset["classes"])
if query is not None:
    results_section(opened, *query, k=k)
quality_section(opened, dataset["root"], k)

with st.expander("About the indexes"):
    for method, got in opened.items():
        st.markdown(f"- {got[1].describe()}" if isinstance(got, tuple) else f"- {method}: {got}")
    st.caption(
        "Exact FAISS flat indexes (L1: `METRIC_L1`; cosine: inner product of L2-normalised vectors). Above "
        f"{IndexConfig().approx_threshold:,} images an approximate HNSW index is used and its recall against "
        "exact search is shown here. Indexes are rebuilt only when the dataset's files or the embedder change; "
        "added photos are embedded and added on their own."
    )
