"""Compare: which regime wins, by how much, at what cost — every run in the run store, side by side.

All numbers come from the run folders (``core.runs.compare``); this page only lays them out. Heavy work (a
model for Predict, an evaluation on another folder) happens only when asked for, and is cached.
"""

import random
from pathlib import Path

import pandas as pd
import streamlit as st

from core.app.inside import PAGE as LOOK_PAGE
from core.app.inside import PHOTO_KEY as LOOK_PHOTO
from core.app.live import latest_race
from core.app.photos import KeptPhoto
from core.app.plots import CurveSeries, confusion_figure, curves_figure, regime_spread_figure
from core.app.report import report_html
from core.data.imagefolder import PHOTO_TYPES
from core.data.sources import check_allowed
from core.errors import TransferLabError
from core.runs.compare import (
    constant_columns,
    epoch_metrics,
    headline,
    per_class_table,
    readable_runs_table,
    readable_summary,
    regime_summary,
    run_label,
    runs_table,
    spread_groups,
    styled_runs_table,
    url_choice,
    url_values,
)
from core.runs.evaluate import cached_run_model, evaluate_run, run_test_predictions
from core.runs.listing import shared_listing
from core.runs.predictions import SplitPredictions, load_photo, predict_image
from core.runs.store import STATUSES, load_run
from core.settings import Settings

settings = Settings.from_env()
THUMBS_PER_ROW, MAX_THUMBS = 6, 24
# The tabs of the chosen runs, by the name a shared link gives them (?compare_tab=confusion).
TABS = {
    "curves": "📈 Curves",
    "confusion": "🧩 Confusion matrix",
    "predict": "🔮 Predict a photo",
    "evaluate": "📁 Evaluate on another folder",
}


def _stamp(*files: Path) -> tuple:
    """Changes when any of ``files`` changes (a cache key): each one's mtime in ns, None when missing."""
    out = []
    for p in files:
        try:
            out.append(p.stat().st_mtime_ns)
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


@st.cache_data(max_entries=32, show_spinner="Predicting the run's test split…")
def cached_test_predictions(run_dir: str, stamp: tuple) -> SplitPredictions:
    return run_test_predictions(load_run(Path(run_dir)), settings)


def own_test_predictions(run) -> SplitPredictions:
    return cached_test_predictions(str(run.dir), _stamp(run.dir / "best.pt", run.dir / "predictions.json"))


def empty_state() -> None:
    st.info(
        "No runs yet. Start a race on the Train page (*Run all four*), or race them from a terminal — it "
        "works offline on the built-in sample:\n\n"
        "```\npython -m core race --data sample --budget-minutes 2\n```"
    )
    st.page_link("app_pages/train.py", label="Go to the Train page →", icon="🏋️")


# ------------------------------------------------------------------------------------------------ table


# The page's selection lives in the URL, in its own ``compare_*`` parameters, so that a shared link opens the same
# view: read when the page's widgets have no state yet, validated, and written back on every change. Only these
# keys are set or deleted: the sidebar and the Train page keep theirs in the same URL.


def from_link(param: str, options: list) -> list | None:
    """The values of ``options`` the link chooses for ``param`` (None: it says nothing usable); what it names
    that is not among them is ignored, with a caption."""
    chosen, unknown = url_choice(st.query_params.get_all(param), options)
    if unknown:
        st.caption(f"Not found here, ignored from the link: {', '.join(unknown)}")
    return chosen


def to_link(param: str, chosen: list, default: list) -> None:
    """Write a choice to the URL: no parameter for the default, so a link stays short."""
    values = url_values(chosen, default)
    if values is None:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get_all(param) != values:
        st.query_params[param] = values


def _filter(column, label: str, values: list) -> list:
    """A multiselect of ``values``, all chosen at first (or as the link says). Its key names the values, so
    when a new one appears (a run on a new dataset) the filter starts again from "all" instead of silently
    hiding it."""
    prefix, param = f"filter_{label.lower()}-", f"compare_{label.lower()}"
    first_run = not any(str(k).startswith(prefix) for k in st.session_state)  # not even under an older key
    with column:
        restored = from_link(param, values) if first_run else None
        chosen = st.multiselect(
            label, values, default=values if restored is None else restored, key=prefix + "|".join(values)
        )
    to_link(param, chosen, values)
    return chosen


def runs_section(table: pd.DataFrame, runs: list):
    """Filters, the verdict, the runs table; returns the filtered table and its summary by regime."""
    c = st.columns(4)
    pick_ds = _filter(c[0], "Dataset", sorted(table["dataset"].unique()))
    pick_bb = _filter(c[1], "Backbone", sorted(table["backbone"].unique()))
    pick_au = _filter(c[2], "Augment", sorted(table["augment"].unique()))
    pick_st = _filter(c[3], "Status", list(STATUSES))
    view = table[
        table["dataset"].isin(pick_ds)
        & table["backbone"].isin(pick_bb)
        & table["augment"].isin(pick_au)
        & table["status"].isin(pick_st)
    ]

    summary = regime_summary(view)
    for line in headline(summary):
        st.success(line, icon="🏆")

    st.subheader(f"All runs ({len(view)} of {len(table)})")
    shown, same_in_all = readable_runs_table(view)
    if same_in_all:
        st.caption(same_in_all)
    st.dataframe(
        styled_runs_table(shown),
        hide_index=True,
        width="stretch",
        key="runs_table",
        column_config={
            "run": st.column_config.TextColumn(width="small", help="The run's folder in the run store"),
            "epochs": st.column_config.NumberColumn(help="Epochs finished"),
            "of": st.column_config.NumberColumn(help="Epochs planned"),
            "best val acc": st.column_config.NumberColumn(
                help="Validation accuracy at the best epoch (lowest validation loss: the checkpoint kept)"
            ),
            "test acc": st.column_config.NumberColumn(help="The best epoch's accuracy on the held-out test split"),
            "train s": st.column_config.NumberColumn(help="Training time in seconds (without data loading)"),
        },
    )
    st.caption(
        "Click a column header to sort. Highlighted: the best value of each metric column "
        "(highest accuracy, least time)."
    )
    st.download_button(
        "⬇️ Table as CSV", view.to_csv(index=False), "transfer-lab-runs.csv", "text/csv", key="download_table"
    )
    shown = set(view["run"])
    for r in runs:
        if r.run_id in shown and r.status in ("corrupt", "interrupted", "failed"):
            st.caption(f"⚠️ `{r.run_id}`: **{r.status}** — {r.error or 'see its folder'}")
    return view, summary


def summary_section(summary: pd.DataFrame, view: pd.DataFrame) -> None:
    st.subheader("Summary by regime")
    if summary.empty:
        st.info("No finished runs among those shown yet.")
        return
    left, right = st.columns([3, 2])
    shown = readable_summary(summary, hidden=constant_columns(view))  # those the runs table's caption states
    # as text: st.dataframe draws a missing number (the std of one run) as "None", whatever the Styler says
    shown["std"] = shown["std"].map(lambda v: "—" if pd.isna(v) else f"{v:.1%}")
    left.dataframe(
        shown.style.format(
            {"mean test acc": "{:.1%}", "min": "{:.1%}", "max": "{:.1%}", "mean train s": "{:.1f}"}, na_rep="—"
        ),
        hide_index=True,
        width="stretch",
        key="summary_table",
    )
    left.caption(
        "Runs with the same regime, augmentation, backbone, dataset, image size and epochs, pooled over seeds: "
        "a regime trained with augmentation off and on shows as two rows. "
        "**std**: how much the test accuracy moves from one seed to another — differences smaller "
        "than that are noise. Repeat a race with another *Seed* on the Train page to measure it."
    )
    right.plotly_chart(regime_spread_figure(spread_groups(summary)), key="spread", width="stretch")


# ----------------------------------------------------------------------------------------- selected runs


def curves_tab(chosen: list, labels: dict) -> None:
    smoothing = st.slider(
        "Smoothing",
        0.0,
        0.95,
        0.5,
        0.05,
        key="smoothing",
        help="Exponential moving average of each curve; the raw curve stays faint behind it.",
    )
    series = [
        CurveSeries(labels[r.run_id], r.config.get("model", {}).get("regime", ""), r.metrics)
        for r in chosen
        if r.metrics
    ]
    if not series:
        st.info("None of the chosen runs has finished an epoch yet.")
        return
    st.plotly_chart(curves_figure(series, smoothing), key="curves", width="stretch")
    st.caption("★ best epoch (lowest validation loss — the checkpoint each run keeps and is tested with).")
    st.download_button(
        "⬇️ Per-epoch metrics of these runs as CSV",
        epoch_metrics(chosen).to_csv(index=False),
        "transfer-lab-epochs.csv",
        "text/csv",
        key="download_epochs",
    )


def _cell_label(cell, preds: SplitPredictions) -> str:
    if cell is None:
        return f"All mistakes ({len(preds.mistakes())})"
    true, pred = cell
    n = len(preds.images(true, pred))
    return f"true {true} → predicted {pred} ({n})" + (" — correct" if true == pred else "")


def thumbnails(items: list, preds: SplitPredictions) -> None:
    if not items:
        st.caption("No images in this cell.")
        return
    for start in range(0, min(len(items), MAX_THUMBS), THUMBS_PER_ROW):
        cols = st.columns(THUMBS_PER_ROW)
        for col, item in zip(cols, items[start : start + THUMBS_PER_ROW]):
            conf = f" ({item['confidence']:.0%})" if item["confidence"] is not None else ""
            caption = f"true **{item['true']}** → {item['predicted']}{conf}"
            if Path(item["path"]).is_file():
                col.image(item["path"], caption=caption, width="stretch")
                if col.button("🔬 Look inside", key=f"cm_look-{item['file']}", width="stretch"):
                    photo = KeptPhoto.dataset_photo(preds.root, item["file"], item["true"], "a test split")
                    st.session_state[LOOK_PHOTO] = photo
                    st.switch_page(LOOK_PAGE)
            else:
                col.caption(f"{caption} — file no longer at {item['path']}")
    if len(items) > MAX_THUMBS:
        st.caption(f"…and {len(items) - MAX_THUMBS} more (most confident shown first).")


def confusion_tab(chosen: list, labels: dict) -> None:
    usable = [r for r in chosen if r.has_checkpoint or (r.dir / "predictions.json").exists()]
    # the saved predictions of ended runs first: a running run is evaluated (in this server) only when chosen
    usable.sort(key=lambda r: r.active)
    if not usable:
        st.info("None of the chosen runs has a checkpoint yet (a run saves one after its first epoch).")
        return
    by_id = {r.run_id: r for r in usable}
    ended = not usable[0].active
    picked = st.selectbox(
        "Run",
        list(by_id),
        index=0 if ended else None,  # evaluating a training run costs this server seconds: only on request
        format_func=labels.get,
        key="cm_run",
        placeholder="Choose a run: each one chosen is still training",
    )
    if picked is None:
        st.info(
            "The chosen runs are still training. Choose one to test its best checkpoint so far; each ended run "
            "shows its confusion matrix at once."
        )
        return
    run = by_id[picked]
    try:
        preds = own_test_predictions(run)
    except TransferLabError as e:
        st.error(str(e))
        return
    cm = preds.confusion()
    filled = [(t, p) for ti, t in enumerate(preds.classes) for pi, p in enumerate(preds.classes) if cm[ti][pi]]
    cells = [None] + [c for c in filled if c[0] != c[1]] + [c for c in filled if c[0] == c[1]]  # mistakes first
    cell_key, chart_key = f"cm_cell-{run.run_id}", f"cm_chart-{run.run_id}"

    def on_click() -> None:  # a click on a (non-empty) cell chooses it in the picker below
        points = st.session_state[chart_key].selection.points
        if points and (points[0].get("y"), points[0].get("x")) in cells:
            st.session_state[cell_key] = (points[0]["y"], points[0]["x"])

    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Test split: {preds.accuracy:.1%}** of {preds.n} images right")
        st.plotly_chart(
            confusion_figure(cm, preds.classes),
            key=chart_key,
            on_select=on_click,
            selection_mode="points",
            width="stretch",
        )
        st.caption("Rows: the true class · columns: what the model said. Click a cell to see its photos.")
    with right:
        st.dataframe(
            per_class_table(cm, preds.classes).style.format({"accuracy": "{:.0%}"}, na_rep="—"),
            hide_index=True,
            width="stretch",
            key=f"per_class-{run.run_id}",
        )
    cell = st.selectbox("Show the photos of", cells, format_func=lambda c: _cell_label(c, preds), key=cell_key)
    thumbnails(preds.mistakes() if cell is None else preds.images(*cell), preds)


def predict_tab(chosen: list, labels: dict) -> None:
    ready = [r for r in chosen if r.has_checkpoint]
    if not ready:
        st.info("None of the chosen runs has a checkpoint yet.")
        return
    up = st.file_uploader("A photo (JPEG, PNG, WebP…)", type=PHOTO_TYPES, key="predict_upload")
    if st.button("🎲 Or try a random photo from a test split", key="predict_random"):
        try:
            pool = own_test_predictions(ready[0])
            st.session_state["predict_sample"] = random.choice(pool.images())
        except (TransferLabError, IndexError) as e:
            st.error(f"No test photo to pick: {e}")
    sample = st.session_state.get("predict_sample")
    if up is not None:
        source, name, truth = up, up.name, None
    elif sample:
        source, name, truth = sample["path"], Path(sample["path"]).name, sample["true"]
    else:
        return
    try:
        photo = load_photo(source, name)
    except TransferLabError as e:
        st.error(str(e))
        return
    left, right = st.columns([1, 4])
    left.image(photo, caption=f"{name} — true class: {truth}" if truth else name, width="stretch")
    cols = right.columns(min(len(ready), 4))
    for i, run in enumerate(ready):
        with cols[i % len(cols)]:
            st.markdown(f"**{labels[run.run_id]}**")
            try:
                with st.spinner("Loading the run's model…"):
                    model = cached_run_model(run)
            except TransferLabError as e:
                st.error(str(e))
                continue
            top = predict_image(model, run.config["resolved"]["classes"], run.config["data"]["img_size"], photo, k=3)
            for rank, (cls, p) in enumerate(top):
                mark = " ✅" if truth and rank == 0 and cls == truth else (" ❌" if truth and rank == 0 else "")
                st.progress(p, text=f"{cls} — {p:.0%}{mark}")


def evaluate_tab(chosen: list, labels: dict, dataset: dict | None) -> None:
    ready = [r for r in chosen if r.has_checkpoint]
    if not ready:
        st.info("None of the chosen runs has a checkpoint yet.")
        return
    by_id = {r.run_id: r for r in ready}
    run = by_id[st.selectbox("Run", list(by_id), format_func=labels.get, key="eval_run")]
    folder = st.text_input(
        "Folder with one sub-folder per class (or a .zip, `sample`, `flowers`)",
        key="eval_folder",
        placeholder="/home/me/held-out-flowers",
    )
    if dataset:
        st.button(
            "Use the sidebar's dataset",
            key="eval_use_sidebar",
            on_click=lambda: st.session_state.update(eval_folder=dataset["root"]),
        )
    st.caption(f"The same as `python -m core evaluate {run.dir} --data {folder.strip() or 'PATH'}`")
    if st.button("Evaluate", type="primary", key="eval_go", disabled=not folder.strip()):
        bar = st.progress(0.0, text="reading images")
        try:
            source = folder.strip()
            if source not in ("sample", "flowers"):  # a path: only inside the folders this server shares
                shared = st.session_state.get("shared_folders", ())
                source = str(check_allowed(source, shared, (settings.cache_dir,)))
            result = evaluate_run(
                run.dir, source, settings, lambda d, t, m: bar.progress(min(1.0, d / t) if t else 0.0, text=m)
            )
            st.session_state["eval_result"] = {"run": run.run_id, "result": result}
        except TransferLabError as e:
            st.session_state.pop("eval_result", None)
            st.error(str(e))
        bar.empty()
    shown = st.session_state.get("eval_result")
    if not shown or shown["run"] != run.run_id:
        return
    result = shown["result"]
    seen = result["seen_in_training"]
    if seen["train"] or seen["val"]:
        st.warning(
            f"This is the folder the run was trained on: {seen['train']:,} of these {result['n']:,} images "
            f"were in its training split and {seen['val']:,} in its validation split, so this accuracy is "
            "optimistic. A held-out folder gives the honest number.",
            icon="⚠️",
        )
    c = st.columns(3)
    c[0].metric("Accuracy", f"{result['accuracy']:.1%}")
    c[1].metric("Images", f"{result['n']:,}")
    own = run.summary.get("test_acc")
    c[2].metric("On its own test split", f"{own:.1%}" if own is not None else "—")
    if result.get("skipped_files"):
        st.caption(f"{result['skipped_files']} unreadable file(s) skipped.")
    left, right = st.columns([3, 2])
    left.plotly_chart(confusion_figure(result["confusion"], result["classes"]), key="eval_cm", width="stretch")
    right.dataframe(
        per_class_table(result["confusion"], result["classes"]).style.format({"accuracy": "{:.0%}"}, na_rep="—"),
        hide_index=True,
        key="eval_per_class",
    )


# ------------------------------------------------------------------------------------------------- page

st.title("📊 Compare")
st.caption("Which regime wins, by how much, and at what cost — every run in the run store.")
all_runs = shared_listing(settings.runs_dir).runs(max_age=0)  # the server's listing: re-reads only what changed
if not all_runs:
    empty_state()
    st.caption(f"Run store: `{settings.runs_dir}`")
    st.stop()

table = runs_table(all_runs)
view, summary = runs_section(table, all_runs)
summary_section(summary, view)

st.subheader("Runs side by side")
readable = [r for r in all_runs if r.status != "corrupt"]
several_backbones = len({r.config.get("model", {}).get("backbone") for r in readable}) > 1
labels = {r.run_id: run_label(r, with_backbone=several_backbones) for r in readable}
race = latest_race(readable)
restored = from_link("compare_runs", list(labels)) if "compare_runs" not in st.session_state else None
ids = st.multiselect(
    "Runs to compare",
    list(labels),
    default=race if restored is None else restored,
    format_func=labels.get,
    key="compare_runs",
    help="Starts with your latest race. Add earlier runs to compare across launches.",
)
to_link("compare_runs", ids, race)
chosen = [r for r in readable if r.run_id in ids]
if not chosen:
    st.info("Choose one or more runs above to see their curves, confusion matrices and predictions.")
else:
    st.download_button(  # built only when clicked (a callable), once per runs' state for every browser
        "📄 Download report",
        data=lambda: report_html(chosen),
        file_name="transfer-lab-report.html",
        mime="text/html",
        key="download_report",
        on_click="ignore",
        help="These runs in one HTML file that opens offline: the verdict, the table, the curves, the confusion "
        "matrices, each run's machine and the command that trains it again (the same as `python -m core report`).",
    )
    if "compare_tab" not in st.session_state:  # set here, not as default=: a changed default resets the tabs
        st.session_state["compare_tab"] = TABS[(from_link("compare_tab", list(TABS)) or ["curves"])[0]]
    tabs = st.tabs(list(TABS.values()), key="compare_tab", on_change="rerun")  # every tab still runs
    to_link("compare_tab", [k for k, v in TABS.items() if v == st.session_state["compare_tab"]], ["curves"])
    with tabs[0]:
        curves_tab(chosen, labels)
    with tabs[1]:
        confusion_tab(chosen, labels)
    with tabs[2]:
        predict_tab(chosen, labels)
    with tabs[3]:
        evaluate_tab(chosen, labels, st.session_state.get("dataset"))
st.caption(f"Run store: `{settings.runs_dir}`")
