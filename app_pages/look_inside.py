"""Look inside: *why* pretrained features transfer, on the class's own runs and one photo.

What ImageNet sees in the photo, where each run looks (Grad-CAM), the filters and feature maps, the dataset's
embedding map, each run's hardest test photos, and the backbone zoo. All logic is in ``core.explain`` and
``core.app.inside``; each section is a fragment, so its own widgets redraw it alone.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import streamlit as st

from core.app.inside import (
    MAX_RUNS,
    PHOTO_KEY,
    default_runs,
    explainable,
    in_regime_order,
    map_chart,
    map_run,
    regime_of,
    run_data,
)
from core.app.photos import KeptPhoto
from core.app.search import files_by_class
from core.app.tasks import shared_tasks
from core.data.imagefolder import PHOTO_TYPES
from core.errors import TransferLabError
from core.explain.cam import CAM_METHODS, explain_photo
from core.explain.embedding_map import cached_map, embedding_map, thumbnail_urls
from core.explain.features import feature_maps, first_layer_filters
from core.explain.imagenet import imagenet_model, imagenet_top
from core.explain.zoo import zoo_table
from core.models.backbones import BACKBONES, get_backbone
from core.models.regimes import display_name
from core.retrieval.embedders import EmbedderConfig
from core.runs.compare import run_label
from core.runs.evaluate import cached_run_model, run_test_predictions
from core.runs.listing import shared_listing
from core.runs.predictions import load_photo, load_predictions
from core.runs.store import RunRecord
from core.settings import Settings
from widgets.progress import StepBar

settings = Settings.from_env()
UPLOAD_ROUND = "look_upload_round"  # bumped after each upload: a new, empty uploader
HARDEST = 12  # test photos in "Hardest mistakes"
PER_ROW = 6
MAP_STARTED = "look_map_started"  # the maps being drawn (their task key)
FINE_PX = 224  # "finer maps": the size ImageNet backbones were trained at
THUMB_PX = 48  # the map's hover photos: 2,919 of them are about 2.4 MB a chart at 48 px (4.6 MB at 64)


def _stamp(run: RunRecord) -> int:
    """Changes when the run's checkpoint does (a cache key)."""
    try:
        return (run.dir / "best.pt").stat().st_mtime_ns
    except FileNotFoundError:
        return 0


# ------------------------------------------------------------------------------------------ cached work


@st.cache_data(max_entries=64, show_spinner=False)
def cached_imagenet_top(backbone: str, tag: str, _photo) -> list:
    return imagenet_top(backbone, _photo, settings, k=5)


@st.cache_data(max_entries=128, show_spinner=False)
def cached_explanation(
    run_dir: str, stamp: int, tag: str, method: str, truth: str | None, at_size: int | None, _run, _photo
):
    data = run_data(_run)
    return explain_photo(
        cached_run_model(_run),
        data["backbone"],
        data["classes"],
        data["img_size"],
        _photo,
        method=method,
        true_class=truth if truth in data["classes"] else None,
        at_size=at_size,
    )


@st.cache_data(max_entries=32, show_spinner=False)
def cached_filters(key: str, stamp: int, backbone: str, _model):
    return first_layer_filters(_model, backbone)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_feature_maps(key: str, stamp: int, tag: str, backbone: str, img_size: int, _model, _photo):
    return feature_maps(_model, backbone, _photo, img_size)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_thumbnails(root: str, files: tuple) -> list:
    return thumbnail_urls(root, list(files), px=THUMB_PX)


@st.cache_data(max_entries=32, show_spinner="Reading the run's test predictions…")
def cached_predictions(run_dir: str, stamp: int, _run):
    return load_predictions(_run.dir) or run_test_predictions(_run, settings)


# ------------------------------------------------------------------------------------------ the photo


def new_uploader() -> None:
    st.session_state[UPLOAD_ROUND] = st.session_state.get(UPLOAD_ROUND, 0) + 1


def keep_upload(key: str, root: str, dataset: str) -> None:
    """The uploader's on_change: its photo becomes the page's photo, and a new, empty uploader takes the next."""
    up = st.session_state.get(key)
    if up is not None:
        st.session_state[PHOTO_KEY] = KeptPhoto.upload(up.name, up.getvalue(), root, dataset)
        new_uploader()


def pick_random(runs: list, dataset: dict | None) -> None:
    """A random photo of a chosen run's test split (none of the runs trained on it), else of the dataset."""
    for run in runs:
        preds = load_predictions(run.dir)
        if preds is not None and preds.n:
            i = random.randrange(preds.n)
            root = run.config.get("resolved", {}).get("data_root", preds.root)
            label = preds.classes[preds.labels[i]]
            st.session_state[PHOTO_KEY] = KeptPhoto.dataset_photo(root, preds.files[i], label, "a test split")
            return
    if dataset:
        by_class = files_by_class(dataset["root"])
        cls = random.choice([c for c, files in by_class.items() if files])
        rel = random.choice(by_class[cls])
        st.session_state[PHOTO_KEY] = KeptPhoto.dataset_photo(dataset["root"], rel, cls, dataset["label"])


def photo_from_link(dataset: dict | None) -> KeptPhoto | None:
    """``?look=<class>/<file>``: a photo of the sidebar's dataset, only when it is one of its files."""
    rel = st.query_params.get("look")
    if not rel or not dataset:
        return None
    cls = rel.split("/", 1)[0]
    if rel in files_by_class(dataset["root"]).get(cls, ()):
        return KeptPhoto.dataset_photo(dataset["root"], rel, cls, dataset["label"])
    st.caption("The link's photo is not one of this dataset's; ignored.")
    return None


def choose_photo(runs: list, dataset: dict | None):
    """(kept photo, decoded photo) or None."""
    root, label = (dataset["root"], dataset["label"]) if dataset else ("", "no dataset")
    up_key = f"look_upload-{st.session_state.get(UPLOAD_ROUND, 0)}"
    c1, c2, c3 = st.columns([4, 2, 1], vertical_alignment="bottom")
    c1.file_uploader(
        "Your photo (JPEG, PNG, WebP…)", type=PHOTO_TYPES, key=up_key, on_change=keep_upload, args=(up_key, root, label)
    )
    c2.button("🎲 A random test photo", on_click=pick_random, args=(runs, dataset), key="look_random", width="stretch")
    c3.button("✖ Clear", on_click=lambda: st.session_state.update({PHOTO_KEY: None}), key="look_clear")
    if PHOTO_KEY not in st.session_state:
        st.session_state[PHOTO_KEY] = photo_from_link(dataset)
        if st.session_state[PHOTO_KEY] is None:
            pick_random(runs, dataset)
    kept = st.session_state.get(PHOTO_KEY)
    if kept is None or not kept.readable():
        st.info("Upload a photo, or take a random one, to look inside the networks with it.")
        return None
    if dataset and kept.is_from(dataset["root"]) and kept.rel:
        st.query_params["look"] = kept.rel  # a link to this view opens this photo
    elif "look" in st.query_params:
        del st.query_params["look"]
    try:
        return kept, load_photo(kept.source(), kept.name)
    except TransferLabError as e:
        st.error(str(e))
        return None


# ------------------------------------------------------------------------------------------ sections


@st.fragment
def imagenet_section(kept: KeptPhoto, photo, backbone: str) -> None:
    st.header("1 · What ImageNet sees", anchor="imagenet")
    spec = get_backbone(backbone)
    st.caption(
        f"{spec.display.split(' (')[0]} with its own ImageNet head, before any training on flowers: its top 5 of "
        "ImageNet's 1,000 classes. ImageNet has a *daisy* but no rose or tulip: what it answers for those shows "
        "what its features already know."
    )
    left, right = st.columns([1, 2])
    shown = photo.copy()
    shown.thumbnail((640, 640))  # an upload may be 100 megapixels: send the browser a small copy
    left.image(shown, caption=kept.name + (f" — {kept.truth}" if kept.truth else ""), width="stretch")
    try:
        with st.spinner("Asking the ImageNet model…"):
            top = cached_imagenet_top(backbone, kept.tag, photo)
    except TransferLabError as e:
        right.info(str(e))
        return
    with right:
        for name, p in top:
            st.progress(p, text=f"{name} — {p:.1%}")


def run_facts(run: RunRecord) -> str:
    """What sets a run apart beside its regime: its test accuracy, image size, seed and backbone."""
    acc = run.summary.get("test_acc")
    data = run_data(run)
    parts = [f"test accuracy {acc:.0%}" if acc is not None else "not finished", f"{data['img_size']} px"]
    return " · ".join(parts + [f"seed {run.config.get('train', {}).get('seed', '?')}", data["backbone"]])


def _top3(explanation) -> None:
    for label, p in explanation.top3:
        st.progress(p, text=f"{label} — {p:.0%}")


@st.fragment
def cam_section(kept: KeptPhoto, photo, runs: list) -> None:
    st.header("2 · Where each run looks", anchor="grad-cam")
    if not runs:
        st.info("Choose runs above (they need a checkpoint: a run saves one after its first epoch).")
        return
    methods = list(CAM_METHODS)
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    method = c1.segmented_control(
        "Method", methods, default=methods[0], format_func=lambda m: CAM_METHODS[m].display, key="look_cam_method"
    )
    method = method or methods[0]
    c2.caption(CAM_METHODS[method].note)
    small = min(run_data(r)["img_size"] for r in runs)
    at_size = None
    if small < FINE_PX and st.toggle(
        f"Finer maps: explain at {FINE_PX} px",
        key="look_cam_fine",
        help=f"A run trained at {small} px has a map of a few cells only at its last conv block. At {FINE_PX} px "
        "the map is finer, but the run sees the photo at a size it never trained on, so its answer may change.",
    ):
        at_size = FINE_PX
    truth = kept.truth
    cols = st.columns(len(runs))
    layers = set()
    for col, run in zip(cols, runs):
        with col:
            st.markdown(f"**{display_name(regime_of(run))}**")
            st.caption(run_facts(run))
            try:
                with st.spinner("Grad-CAM…"):
                    ex = cached_explanation(str(run.dir), _stamp(run), kept.tag, method, truth, at_size, run, photo)
            except TransferLabError as e:
                st.error(str(e))
                continue
            layers.add(f"{ex.target_layer} at {ex.size_note}")
            for cam in ex.cams:
                right = " ✅" if cam.role == "predicted" and truth and cam.label == truth else ""
                st.image(cam.overlay, caption=f"{cam.role}: {cam.label} ({cam.prob:.0%}){right}", width="stretch")
            _top3(ex)
    if layers:
        st.caption(
            f"Heat maps from the target layer {'; '.join(sorted(layers))} (the backbone's last conv block): red is "
            "where the evidence for that class is. A run that is right for the wrong reason looks at the background."
        )


def _model_choices(runs: list, backbone: str) -> dict:
    """``{label: (key, stamp, backbone, img_size, loader)}`` of the networks whose insides can be drawn."""
    out = {
        f"ImageNet {get_backbone(backbone).display.split(' (')[0]}": (
            f"imagenet:{backbone}",
            0,
            backbone,
            get_backbone(backbone).imagenet_px,
            lambda: imagenet_model(backbone, settings)[0],
        )
    }
    for run in runs:
        data = run_data(run)
        out[run_label(run)] = (
            str(run.dir),
            _stamp(run),
            data["backbone"],
            data["img_size"],
            lambda run=run: cached_run_model(run),
        )
    return out


@st.fragment
def features_section(kept: KeptPhoto, photo, runs: list, backbone: str) -> None:
    st.header("3 · Filters and feature maps", anchor="features")
    st.caption(
        "The first layer's filters, each drawn as a small colour tile: ImageNet's are edges and colour blobs, a "
        "network trained from scratch on a few hundred photos keeps much of its random start."
    )
    scratch = next((r for r in runs if regime_of(r) == "scratch"), None)
    pairs = [(f"ImageNet {get_backbone(backbone).display.split(' (')[0]}", f"imagenet:{backbone}", 0, backbone, None)]
    if scratch is not None:
        pairs.append(
            (
                run_label(scratch),
                str(scratch.dir),
                _stamp(scratch),
                run_data(scratch)["backbone"],
                scratch,
            )
        )
    cols = st.columns(2)
    for col, (label, key, stamp, bb, run) in zip(cols, pairs):
        with col:
            try:
                model = imagenet_model(bb, settings)[0] if run is None else cached_run_model(run)
                st.image(cached_filters(key, stamp, bb, model), caption=label, width="stretch")
            except TransferLabError as e:
                st.info(str(e))
    if scratch is None:
        cols[1].caption("Choose a *from scratch* run above to set its filters beside these.")

    choices = _model_choices(runs, backbone)
    name = st.selectbox("Feature maps of", list(choices), key="look_maps_of")
    key, stamp, bb, px, load = choices[name]
    try:
        model = load()
        maps = cached_feature_maps(key, stamp, kept.tag, bb, px, model, photo)
    except TransferLabError as e:
        st.info(str(e))
        return
    st.caption(f"The photo at {px} px through {name}: the 8 strongest channels at three depths, strongest first.")
    for col, fm in zip(st.columns(len(maps)), maps):
        col.image(
            fm.image, caption=f"{fm.depth}: {fm.layer} · {fm.channels} channels, {fm.size}×{fm.size}", width="stretch"
        )


def _map_sources(runs: list, backbone: str, dataset: dict) -> dict:
    """``{title: embedder config}``: ImageNet's features, and a fine-tuned run's that trained on this dataset."""
    out = {f"ImageNet {get_backbone(backbone).display.split(' (')[0]}": EmbedderConfig(backbone=backbone)}
    same_data = [r for r in runs if r.config.get("resolved", {}).get("data_root") == dataset["root"]]
    run = map_run(same_data)
    if run is not None:
        out[run_label(run)] = EmbedderConfig(run=str(run.dir))
    return out


def photo_from_map(event, chart_key: str, frame: pd.DataFrame, dataset: dict) -> None:
    """A click on a dot makes that photo the page's photo (once per click: the chart keeps its selection)."""
    points = (event or {}).get("selection", {}).get("photo") or []
    files = [p.get("file") for p in points if p.get("file")]
    handled = f"{chart_key}-handled"
    if not files or st.session_state.get(handled) == files[0]:
        return
    st.session_state[handled] = files[0]
    row = frame[frame["file"] == files[0]]
    if len(row):
        label = str(row["label"].iloc[0])
        st.session_state[PHOTO_KEY] = KeptPhoto.dataset_photo(dataset["root"], files[0], label, dataset["label"])
        st.rerun(scope="app")


@st.fragment
def map_section(kept: KeptPhoto | None, runs: list, backbone: str, dataset: dict | None) -> None:
    st.header("4 · The embedding map", anchor="map")
    if not dataset:
        st.info("Choose a dataset in the sidebar: the map shows its photos.")
        return
    sources = _map_sources(runs, backbone, dataset)
    st.caption(
        "Every photo of the dataset as one dot, placed so that photos the network finds alike are close "
        "(UMAP of its features; PCA until UMAP is ready). Hover a dot to see its photo, click it to look inside "
        "with it. The features are the search index's: a dataset is embedded once for Search and the map."
    )
    maps = {}
    for title, cfg in list(sources.items()):
        try:
            maps[title] = cached_map(dataset["root"], cfg, settings, "umap") or cached_map(
                dataset["root"], cfg, settings, "pca"
            )
        except TransferLabError as e:  # a run's checkpoint damaged since, weights gone…
            st.error(f"{title}: {e}")
            del sources[title]
    if not sources:
        return
    button_slot = st.empty()
    slots = {title: col.empty() for title, col in zip(sources, st.columns(len(sources)))}
    for title, m in maps.items():
        draw_map(slots[title], title, m, kept, dataset)
    missing = [t for t, m in maps.items() if m is None or m.method != "umap"]
    if not missing:
        return
    task_key = f"map|{dataset['root']}|" + "|".join(str(c) for c in sources.values())
    label = f"🗺️ Draw the map{'s' if len(missing) > 1 else ''} ({dataset['n']:,} photos)"
    if st.session_state.get(MAP_STARTED) != task_key and not button_slot.button(label, key="look_map_go"):
        return
    button_slot.empty()
    st.session_state[MAP_STARTED] = task_key  # a rerun meanwhile waits for the same tasks
    steps = [(title, method) for method in ("pca", "umap") for title in missing]  # every PCA first: it is instant
    bar = StepBar(len(steps), "Drawing the embedding maps (once; saved for next time).")
    for step, (title, method) in enumerate(steps, 1):

        def work(progress, cfg=sources[title], method=method):
            return embedding_map(dataset["root"], cfg, settings, method=method, on_progress=progress)

        try:
            m = shared_tasks().run(f"{task_key}|{title}|{method}", work, bar.poller(step, f"{title}, {method.upper()}"))
        except TransferLabError as e:
            st.error(str(e))
            break
        if maps[title] is None or m.method == "umap":
            maps[title] = m
            draw_map(slots[title], title, m, kept, dataset)
    bar.close()
    st.session_state.pop(MAP_STARTED, None)


def draw_map(slot, title: str, m, kept: KeptPhoto | None, dataset: dict) -> None:
    """One map into its ``slot`` (an ``st.empty``): PCA first, replaced by UMAP when it is ready."""
    with slot.container():
        st.markdown(f"**{title}**")
        if m is None:
            st.caption("Not drawn yet.")
            return
        frame = m.as_frame()
        frame["image"] = cached_thumbnails(m.root, tuple(m.files))
        chart_key = f"look_map-{title}-{m.method}"  # a map replaced in the same run needs its own key
        event = st.altair_chart(
            map_chart(frame, m.classes, selected=kept.rel if kept and kept.is_from(m.root) else None),
            key=chart_key,
            on_select="rerun",
            selection_mode="photo",
            width="stretch",
        )
        photo_from_map(event, chart_key, frame, dataset)
        st.metric(m.separation_label, f"{m.separation:.0%}", help=m.separation_help)
        st.caption(f"{m.method.upper()} of {len(m.files):,} photos · {m.description}")


@st.fragment
def hardest_section(runs: list) -> None:
    st.header("5 · Hardest mistakes", anchor="hardest")
    if not runs:
        st.info("Choose runs above to see the test photos each one found hardest.")
        return
    by_id = {r.run_id: r for r in runs}
    picked = st.selectbox(
        "Run",
        list(by_id),
        format_func=lambda i: run_label(by_id[i]),
        key="look_hard_run",
    )
    run = by_id[picked]
    try:
        preds = cached_predictions(str(run.dir), _stamp(run), run)
    except TransferLabError as e:
        st.error(str(e))
        return
    items = preds.hardest(HARDEST)
    if not items:
        st.info("This run's saved predictions have no probabilities (an older run): train it again to see them.")
        return
    st.caption(
        "Its test photos with the highest loss (the lowest probability given to the true class): mostly confident "
        "mistakes. **Look inside** opens one in sections 1–3."
    )
    root = run.config.get("resolved", {}).get("data_root", preds.root)
    for start in range(0, len(items), PER_ROW):
        for col, item in zip(st.columns(PER_ROW), items[start : start + PER_ROW]):
            with col:
                mark = "✅" if item["true"] == item["predicted"] else "❌"
                caption = f"{mark} true **{item['true']}** → {item['predicted']} ({item['confidence']:.0%})"
                if Path(item["path"]).is_file():
                    st.image(item["path"], caption=caption, width="stretch")
                    if st.button("🔬 Look inside", key=f"look_hard-{run.run_id}-{item['file']}", width="stretch"):
                        st.session_state[PHOTO_KEY] = KeptPhoto.dataset_photo(
                            root, item["file"], item["true"], "a test split"
                        )
                        st.rerun(scope="app")
                else:
                    st.caption(f"{caption} — file no longer at {item['path']}")


@st.fragment
def zoo_section() -> None:
    st.header("6 · Backbone zoo", anchor="zoo")
    st.caption(
        "Every backbone the app can use. Published accuracy is on ImageNet's 50,000 validation photos; speed is "
        "measured here, on this machine, when you ask. *Best on flowers* is the best test accuracy of each regime "
        "among the finished runs on the flowers dataset."
    )
    if st.button("⏱️ Measure speed on this machine", key="look_zoo_measure"):
        bar = st.progress(0.0, text="Measuring…")
        try:
            rows = shared_tasks().run(
                "zoo|measure",
                lambda progress: zoo_table(settings, measure=True, on_progress=progress),
                lambda task: bar.progress(task.fraction, text=task.message),
            )
        except TransferLabError as e:
            st.error(str(e))
            rows = zoo_table(settings)
        bar.empty()
    else:
        rows = zoo_table(settings)
    st.dataframe(zoo_frame(rows), hide_index=True, width="stretch", key="look_zoo_table")
    measured = [r.latency for r in rows if r.latency]
    if measured:
        share = min(m.get("cpu_share") or 1.0 for m in measured)
        st.caption(
            f"Speed: fp32 PyTorch at {measured[0]['px']} px on this machine ({measured[0]['isa']}, "
            f"{measured[0]['threads']} threads), the median of {measured[0]['repeats']} passes."
            + (
                f" ⚠️ Other work had the cores while some were measured (as little as {share:.0%} of the CPU): "
                "those figures are slower than the backbone is."
                if share < 0.9
                else ""
            )
        )


def zoo_frame(rows) -> pd.DataFrame:
    out = []
    for row in rows:
        lat = row.latency or {}
        out.append(
            {
                "Backbone": row.display,
                "Parameters (M)": row.parameters / 1e6,
                "Weights (MB)": row.weights_mb,
                "On this machine": "✅" if row.weights else "— not here",
                "ImageNet top-1 (%)": row.imagenet_top1,
                "Input (px)": row.imagenet_px,
                "1 photo (ms)": lat.get("batch1_ms"),
                "32 photos (ms)": lat.get("batch32_ms"),
                "Photos/s": lat.get("images_per_s"),
                **{f"Best on flowers: {display_name(k)}": v for k, v in row.best.items()},
                "Accuracy source": row.imagenet_top1_source,
            }
        )
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------ page

st.title("🔬 Look inside")
st.caption(
    "*Why* does a pretrained network transfer? Pick a photo and runs, and see what ImageNet already knows, where "
    "each regime looks, what its filters learnt, how it arranges the whole dataset, and what it finds hardest."
)
dataset = st.session_state.get("dataset")
sidebar_backbone = st.session_state.get("backbone") or next(iter(BACKBONES))
runs_all = shared_listing(settings.runs_dir).runs()
usable = in_regime_order(explainable(runs_all))
by_id = {r.run_id: r for r in usable}
if "look_runs" not in st.session_state:
    st.session_state["look_runs"] = default_runs(runs_all, st.session_state.get("owner", ""))
st.session_state["look_runs"] = [i for i in st.session_state["look_runs"] if i in by_id]
chosen_ids = st.multiselect(
    "Runs to look inside (your latest race until you choose)",
    list(by_id),
    format_func=lambda i: run_label(by_id[i]),
    max_selections=MAX_RUNS,
    key="look_runs",
    placeholder="No run with a checkpoint yet: train one on the Train page" if not by_id else "Choose up to 4 runs",
)
runs = in_regime_order([by_id[i] for i in chosen_ids])
backbones = [run_data(r)["backbone"] for r in runs]
backbone = max(set(backbones), key=backbones.count) if backbones else sidebar_backbone

chosen = choose_photo(runs, dataset)
if chosen is not None:
    kept, photo = chosen
    imagenet_section(kept, photo, backbone)
    cam_section(kept, photo, runs)
    features_section(kept, photo, runs, backbone)
map_section(st.session_state.get(PHOTO_KEY), runs, backbone, dataset)
hardest_section(runs)
zoo_section()
