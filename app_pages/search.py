"""Search: a photo in, its nearest neighbours out — by raw pixels (L1, cosine), deep features, and deep features
through a triplet-trained head.

The indexes are built once per dataset and method (under one progress bar), saved in the cache and reused;
everything here comes from ``core.retrieval.index`` and ``core.retrieval.metrics``. The query is kept in the
session (:class:`core.app.photos.KeptPhoto`), so a change of dataset in the sidebar searches it again there.
"""

import random
from pathlib import Path

import pandas as pd
import streamlit as st

from core.app.inside import PAGE as LOOK_PAGE
from core.app.inside import PHOTO_KEY as LOOK_PHOTO
from core.app.photos import KeptPhoto
from core.app.plots import retrieval_quality_figure
from core.app.search import (
    QUERY_KEY,
    THUMB_SIZES,
    TRAIL_KEY,
    QueryTrail,
    class_key,
    deep_sources,
    default_thumb_size,
    file_key,
    files_by_class,
    framed_thumbnail,
    root_tag,
)
from core.app.tasks import shared_tasks
from core.data.decode import ImageDecodeError
from core.data.imagefolder import PHOTO_TYPES, scan_image_folder
from core.errors import TransferLabError
from core.retrieval.embedders import EmbedderConfig
from core.retrieval.index import IndexConfig, open_index
from core.retrieval.methods import METHODS
from core.retrieval.metrics import evaluate_index
from core.retrieval.projection import TRAIN_BUTTON, latest_embedder
from core.retrieval.stores import StoreConfig, check_store, refusal
from core.retrieval.triplet import TripletConfig, compare_held_out, train_embedder
from core.runs.predictions import load_photo
from core.settings import Settings
from widgets.progress import StepBar

settings = Settings.from_env()
K_MAX = 24  # the most neighbours shown; leave-one-out rankings are computed (and saved) to this depth
UPLOAD_ROUND = "search_upload_round"  # bumped after each upload and by "Clear the photo": a new, empty uploader
STORE_KIND, STORE_URI = "search_store", "search_milvus_uri"  # the page's store settings (the teacher's)
THUMBS_CHOSEN = "search_thumbs_chosen"  # the thumbnail size the user picked: k no longer decides it
MATCH, OTHER = "#2ca02c", "#d9d9d9"
AUTO_MEASURE_UP_TO = 1000  # datasets this small get their precision@k measured without asking
COLUMN_HELP = {
    "l1": "Sum of absolute differences between the two photos' pixels (86×128, 0–255). "
    "Shown as the mean difference per pixel value: **lower is closer**.",
    "cosine": "Angle between the two photos' pixel vectors: the same picture brighter or darker still matches. "
    "**Higher is closer** (1 = identical up to brightness).",
    "deep": "Angle between what the network *sees*: pooled features of a pretrained CNN. **Higher is closer**.",
    "triplet": "The deep features through a small head trained with a **triplet loss** on this dataset's training "
    "photos: each photo is pulled towards photos of its class and pushed from the others. Angle between the "
    "128-number embeddings: **higher is closer**.",
}


@st.cache_data(ttl=30, show_spinner=False)
def cached_files_by_class(root: str) -> dict:
    return files_by_class(root)


@st.cache_data(max_entries=1024, show_spinner=False)
def cached_thumbnail(path: str, colour: str, stamp: int, px: int) -> bytes:
    """``stamp``: the file's mtime, so edits show."""
    return framed_thumbnail(path, colour, px)


class Refused(str):
    """Why a method is not searched here (not an error: a fact about the store or the deep features chosen)."""


class NotTrained(str):
    """The triplet method before a head is trained for this dataset and ``backbone``: a button trains one."""

    backbone = ""


def why_not(method: str, cfg: EmbedderConfig, root: str, store: StoreConfig):
    """Why ``method`` is not searched here (a :class:`Refused` or :class:`NotTrained`), or None when it is."""
    refused = refusal(store, method, cfg)
    if refused:  # this store cannot hold this method: said in its column, and no time spent
        return Refused(refused)
    if method == "triplet" and cfg.run:
        return Refused(
            "Deep + triplet learns on top of ImageNet features: choose an ImageNet backbone under "
            "*Deep features from* to see it."
        )
    if method == "triplet" and latest_embedder(Path(root), cfg.backbone, settings) is None:
        untrained = NotTrained("not trained yet for this dataset and backbone (the button in its column)")
        untrained.backbone = cfg.backbone
        return untrained
    return None


def open_indexes(root: str, deep_cfg: EmbedderConfig, store: StoreConfig) -> dict:
    """``{method: (index, report) or why not}``. Building runs as a background task, so a click
    during a first build does not throw the work away: the rerun finds the task and shows its progress."""
    try:
        listing = scan_image_folder(Path(root), min_classes=1)  # once for every method
    except TransferLabError as e:
        return {method: str(e) for method in METHODS}
    cfgs = {m: deep_cfg if spec.embedder in ("deep", "triplet") else EmbedderConfig() for m, spec in METHODS.items()}
    out = {m: why_not(m, cfgs[m], root, store) for m in METHODS}
    todo = [m for m in METHODS if out[m] is None]
    bar = StepBar(len(todo), "Building the search indexes (once; saved for next time).")  # steps: what is built
    for step, method in enumerate(todo, 1):

        def build(progress, method=method, cfg=cfgs[method]):
            return open_index(
                Path(root), method, cfg, settings=settings, on_progress=progress, listing=listing, store=store
            )

        try:
            key = f"index|{root}|{method}|{cfgs[method]}|{store.kind}|{store.uri}"
            out[method] = shared_tasks().run(key, build, bar.poller(step, METHODS[method].display))
        except TransferLabError as e:
            out[method] = str(e)
    bar.close()
    return out


@st.cache_data(ttl=20, show_spinner=False)
def reach_store(kind: str, uri: str) -> tuple:
    """``(True, what answered)`` or ``(False, why not)``: checked at most every 20 s, so that an unreachable
    server costs its connect timeout once, not on every click."""
    try:
        return True, check_store(StoreConfig.from_settings(settings, kind=kind, uri=uri), settings)
    except TransferLabError as e:
        return False, str(e)


def use_faiss() -> None:
    st.session_state[STORE_KIND] = "faiss"


def choose_store(where) -> StoreConfig:
    """The vector store this session searches in, from the page's settings (the teacher's to change: a class
    shares the server) or else the environment; a clear error and a way to the FAISS store when Milvus cannot be
    reached, never a silent switch."""
    teacher = bool(st.session_state.get("teacher"))
    kinds = {"faiss": "FAISS files (default, this machine)", "milvus": "Milvus (Lite file or server)"}
    st.session_state.setdefault(STORE_KIND, settings.store if settings.store in kinds else "faiss")
    st.session_state.setdefault(STORE_URI, settings.milvus_uri)
    with where.popover(f"⚙ Store: {'FAISS' if st.session_state[STORE_KIND] == 'faiss' else 'Milvus'}"):
        st.radio("Where the vectors live", list(kinds), format_func=kinds.get, key=STORE_KIND, disabled=not teacher)
        if st.session_state[STORE_KIND] == "milvus":
            st.text_input(
                "Milvus URI",
                key=STORE_URI,
                placeholder="empty: a Milvus Lite file in the cache",
                help="A Milvus Lite file (a path ending in .db: Milvus embedded in this app, no server) or a server, "
                "http://host:19530. A server's token comes from TRANSFERLAB_MILVUS_TOKEN.",
                disabled=not teacher,
            )
        if not teacher:
            st.caption("The teacher chooses the store (teacher mode, in the sidebar).")
        st.caption(
            "FAISS keeps one file per dataset and method in the cache: what one laptop needs. Milvus is a vector "
            "database: a collection can outgrow one machine. Milvus has no L1 metric, and takes at most 32,768 "
            "numbers a vector, so only deep features are searched there at the default pixel size."
        )
    try:
        store = StoreConfig.from_settings(settings, kind=st.session_state[STORE_KIND], uri=st.session_state[STORE_URI])
    except TransferLabError as e:
        st.error(str(e))
        st.stop()
    if store.kind == "milvus":
        ok, said = reach_store(store.kind, store.uri)
        if not ok:
            st.error(said)
            st.button("Use the FAISS store", on_click=use_faiss, key="search_use_faiss", disabled=not teacher)
            st.stop()
    return store


def new_uploader() -> None:
    st.session_state[UPLOAD_ROUND] = st.session_state.get(UPLOAD_ROUND, 0) + 1


def keep_upload(key: str, root: str, dataset: str) -> None:
    """The uploader's on_change: its photo becomes the kept query, and a new, empty uploader takes the next one.
    The uploader never shows a photo of its own, so it has none to lose: a browser re-mounting an uploader
    (after a run without it) re-sends, then withdraws, the file it held, which would otherwise read as a new
    upload and then as the user removing it."""
    up = st.session_state.get(key)
    if up is None:
        return
    kept, new = st.session_state.get(QUERY_KEY), KeptPhoto.upload(up.name, up.getvalue(), root, dataset)
    if kept is None or (kept.tag, kept.name) != (new.tag, new.name):  # the same photo keeps where it came from
        st.session_state[QUERY_KEY] = new
    new_uploader()


def clear_query() -> None:
    st.session_state[QUERY_KEY] = None
    new_uploader()


def show_photo(kept: KeptPhoto, root: str) -> None:
    """Make ``kept`` the query (a callback: it runs before the pickers are drawn). A photo of this dataset goes
    back into the class and photo pickers; an upload, or a photo of another dataset, is kept as it is."""
    if not kept.uploaded and kept.is_from(root):
        st.session_state[class_key(root)] = kept.truth
        st.session_state[file_key(root, kept.truth)] = kept.rel
    st.session_state[QUERY_KEY] = kept


def more_like_this(root: str, dataset: str, rel: str, label: str) -> None:
    """A neighbour's button: that photo becomes the query, and the query it replaces goes on the trail."""
    kept = KeptPhoto.dataset_photo(root, rel, label, dataset)
    st.session_state[TRAIL_KEY] = st.session_state.get(TRAIL_KEY, QueryTrail()).visit(kept)
    show_photo(kept, root)


def step_back(root: str, i: int) -> None:
    """A breadcrumb's button: back to the ``i``-th earlier query."""
    trail = st.session_state.get(TRAIL_KEY, QueryTrail()).back_to(i)
    st.session_state[TRAIL_KEY] = trail
    show_photo(trail.current, root)


def breadcrumb(root: str) -> None:
    """The earlier queries, oldest first, each a button back to it."""
    trail = st.session_state.get(TRAIL_KEY, QueryTrail())
    if not trail.earlier:
        return
    with st.container(horizontal=True, vertical_alignment="center"):
        st.caption("Earlier queries:")
        for i, kept in enumerate(trail.earlier):
            st.button(
                f"↩ {kept.name}" if len(kept.name) <= 28 else f"↩ {kept.name[:25]}…",
                key=f"search_back-{i}-{kept.tag}",
                on_click=step_back,
                args=(root, i),
                help=f"Search with {kept.name} again" + (f" ({kept.truth})" if kept.truth else ""),
            )


def kept_query_panel(kept: KeptPhoto, root: str, classes: list):
    """The kept upload, or a photo of another dataset: a note, a way to drop it, and what is in the photo."""
    note = kept.note(root, classes)
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    c1.info(note or f"Searching with your photo **{kept.name}**.", icon="📌" if note else "📷")
    c2.button("✖ Clear the photo", on_click=clear_query, key="search_clear", width="stretch")
    options = ["", *classes]
    truth = st.selectbox(
        "What is in the photo? (optional: highlights the neighbours of that class)",
        options,
        index=options.index(kept.truth_in(classes) or ""),
        format_func=lambda c: c or "— don't know —",
        key=f"search_truth-{root_tag(root)}-{kept.tag}",  # per query and dataset: it starts at the kept class
    )
    if truth and truth != kept.truth:  # "don't know" on a dataset without the kept class keeps the class
        st.session_state[QUERY_KEY] = kept = kept.with_truth(truth)
    elif not truth and kept.truth in classes:
        st.session_state[QUERY_KEY] = kept = kept.with_truth(None)
    return kept.source(), kept.name, kept.truth_in(classes), None


def choose_query(root: str, dataset: str, classes: list):
    """(source, name, true class or None, dataset file or None); None when there is no usable query. The
    query is kept in the session: an upload, or a photo from another dataset, is searched here too."""
    up_key = f"search_upload-{st.session_state.get(UPLOAD_ROUND, 0)}"
    st.file_uploader(
        "Upload a photo to search with (JPEG, PNG, WebP…; any size)",
        type=PHOTO_TYPES,
        key=up_key,
        on_change=keep_upload,
        args=(up_key, root, dataset),
    )
    kept = st.session_state.get(QUERY_KEY)
    if kept is not None and (kept.uploaded or not kept.is_from(root)) and kept.readable():
        return kept_query_panel(kept, root, classes)
    by_class = cached_files_by_class(root)
    cls_key = class_key(root)

    def pick_random(rng=random) -> None:
        cls = rng.choice([c for c in classes if by_class.get(c)])
        st.session_state[cls_key] = cls
        st.session_state[file_key(root, cls)] = rng.choice(by_class[cls])

    if cls_key not in st.session_state:  # back on this dataset: its photo kept; else arrive with one searched
        if kept is not None and kept.is_from(root) and kept.rel in by_class.get(kept.truth, ()):
            st.session_state[cls_key] = kept.truth
            st.session_state[file_key(root, kept.truth)] = kept.rel
        else:
            pick_random(random.Random(0))
    st.caption("…or pick one from the dataset (it is left out of its own results):")
    c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="bottom")
    cls = c1.selectbox("Class", classes, key=cls_key)
    files = by_class.get(cls, [])
    if not files:
        return None
    rel = c2.selectbox("Photo", files, key=file_key(root, cls), format_func=lambda f: Path(f).name)
    c3.button("🎲 Random", on_click=pick_random, key="search_random", width="stretch")
    st.session_state[QUERY_KEY] = KeptPhoto.dataset_photo(root, rel, cls, dataset)
    return Path(root) / rel, Path(rel).name, cls, rel


def neighbour_grid(index, result, truth, size: str, root: str, dataset: str) -> None:
    """The neighbours as framed thumbnails (green: the query's class), each with a "more like this" button."""
    per_row, px = THUMB_SIZES[size]
    rows = [result.neighbours[i : i + per_row] for i in range(0, len(result.neighbours), per_row)]
    for row in rows:
        cols = st.columns(per_row)
        for col, n in zip(cols, row):
            same = truth is not None and n.label == truth
            caption = (
                f"{n.rank}. {'✅ ' if same else ''}**{n.label}**  \n"
                f"{index.method.format_score(n.score, index.embedder.dim)}"
            )
            try:
                col.image(
                    cached_thumbnail(n.path, MATCH if same else OTHER, Path(n.path).stat().st_mtime_ns, px),
                    caption=caption,
                    width="stretch",
                )
            except (OSError, ImageDecodeError):  # moved, deleted or damaged since the index was built
                col.caption(f"{caption} — the file is no longer readable at {n.path}")
                continue
            col.button(
                "🔁 More like this",
                key=f"search_more-{index.method.name}-{n.rank}",
                on_click=more_like_this,
                args=(root, dataset, n.file, n.label),
                help=f"Search with {Path(n.file).name} ({n.label})",
                width="stretch",
            )


def results_section(
    opened: dict, source, name: str, truth, own_file, k: int, size: str, root: str, dataset: str
) -> bool:
    """The query and its neighbours by each method; False (with an error box) when the photo cannot be searched."""
    results = {}
    for method, got in opened.items():
        if isinstance(got, tuple):
            try:
                results[method] = got[0].search(source, k, exclude_file=own_file, name=name)
            except TransferLabError as e:
                st.error(str(e))
                return False
    left, right = st.columns([1, 3], vertical_alignment="center")
    with left:
        if hasattr(source, "seek"):
            source.seek(0)
        shown = load_photo(source, name)
        shown.thumbnail((640, 640))  # an upload may be 100 megapixels: send the browser a small copy
        st.image(shown, caption=f"Query: {name}" + (f" — {truth}" if truth else ""), width="stretch")
        kept = st.session_state.get(QUERY_KEY)
        if kept is not None and st.button("🔬 Look inside with it", key="search_look", width="stretch"):
            st.session_state[LOOK_PHOTO] = kept
            st.switch_page(LOOK_PAGE)
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
            if isinstance(got, NotTrained):
                triplet_trainer(root, got.backbone)
                continue
            if not isinstance(got, tuple):
                (st.info if isinstance(got, Refused) else st.error)(got)
                continue
            index, _ = got
            st.caption(
                f"{index.embedder.description} · {len(index):,} images · {results[method].seconds * 1000:.0f} ms"
            )
            neighbour_grid(index, results[method], truth, size, root, dataset)
    return True


def triplet_trainer(root: str, backbone: str) -> None:
    """The triplet column before a head is trained: what it is, and a button that trains one (seconds: it learns
    from the deep index's vectors) under a progress bar, as a background task a rerun finds again."""
    key = f"search_train_triplet-{root_tag(root)}-{backbone}"
    if not st.session_state.get(key):
        st.info(
            "Not trained yet for this dataset and backbone. A small head learns, from the deep features of the "
            "training photos, to put photos of one class close together; a fifth of the photos is held out to "
            "measure it."
        )
        st.button(
            f"🎯 {TRAIN_BUTTON}", key="search_train_triplet", on_click=st.session_state.update, args=({key: True},)
        )
        return
    bar = StepBar(1, "Training the triplet head on the cached deep features.")
    try:
        shared_tasks().run(
            f"triplet|{root}|{backbone}",
            lambda progress: train_embedder(Path(root), TripletConfig(backbone=backbone), settings, progress),
            bar.poller(1, "Deep + triplet", unit="batches"),
        )
    except TransferLabError as e:
        st.error(str(e))
        return
    finally:
        bar.close()
        st.session_state[key] = False
    st.rerun()  # the new head: the column opens its index


def held_out_panel(ready: dict, k: int) -> None:
    """Deep + triplet against the deep features it starts from, on the photos its head never trained on."""
    triplet, deep = ready.get("triplet"), ready.get("deep")
    if triplet is None or deep is None:
        return
    record = triplet.embedder.record
    q = compare_held_out({"deep": deep, "triplet": triplet}, record, k)
    gain = q["triplet"].precision_at_k - q["deep"].precision_at_k
    st.markdown(f"##### 🎯 Deep + triplet against deep features, on photos it never trained on (k = {q['deep'].k})")
    cols = st.columns(3)
    cols[0].metric(f"Deep features: precision@{q['deep'].k}", f"{q['deep'].precision_at_k:.1%}")
    cols[1].metric(
        f"Deep + triplet: precision@{q['triplet'].k}",
        f"{q['triplet'].precision_at_k:.1%}",
        delta=f"{gain * 100:+.1f} points",
    )
    cols[2].metric(f"mAP@{q['triplet'].k}: deep → triplet", f"{q['deep'].map_at_k:.1%} → {q['triplet'].map_at_k:.1%}")
    st.caption(
        f"Protocol: {q['triplet'].protocol}. The head was trained on the other "
        f"{record.summary.get('train_photos', '?')} photos only (triplet loss, semi-hard mining; "
        f"{record.summary.get('fit_seconds', 0):.1f} s). The chart above is leave-one-out over every photo, which "
        "would flatter the triplet head: it has seen most of them."
    )


def quality_section(opened: dict, root: str, k: int) -> None:
    st.subheader("📏 Which method finds photos of the same class?")
    everything = {m: got[0] for m, got in opened.items() if isinstance(got, tuple)}
    ready = {m: ix for m, ix in everything.items() if m != "triplet"}  # measured on held-out photos, below
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
        held_out_panel(everything, k)
        return
    bar = StepBar(len(ready))
    rows = []
    for step, (method, index) in enumerate(ready.items(), 1):
        depth = min(K_MAX, len(index) - 1)
        shared_tasks().run(
            f"loo|{index.path}|{depth}",
            lambda progress, ix=index, d=depth: ix.leave_one_out(d, progress),
            bar.poller(step, METHODS[method].display),
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
    bar.close()
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
    held_out_panel(everything, k)


st.title("🔎 Search")
st.markdown(
    "**Find similar photos four ways.** Raw pixels compare colours where they sit in the picture; "
    "deep features compare what a network trained on ImageNet recognises in it; deep + triplet sharpens those "
    "features for this dataset's classes with a small head trained in seconds."
)

dataset = st.session_state.get("dataset")
if not dataset:
    st.warning("Choose a dataset in the sidebar: its photos are what the search looks through.")
    st.stop()

sources = deep_sources(settings)
keys = list(sources)
sidebar_key = f"imagenet:{st.session_state.get('backbone')}"
controls = st.columns([3, 2, 2, 1.4], vertical_alignment="bottom")
deep_key = controls[0].selectbox(
    "Deep features from",
    keys,
    format_func=lambda key: sources[key][0],
    index=keys.index(sidebar_key) if sidebar_key in keys else 0,
    key="search_deep",
    help="A fine-tuned run's network has learnt these classes: compare its neighbourhoods with the ImageNet ones.",
)


def choose_size(key: str) -> None:
    st.session_state[THUMBS_CHOSEN] = st.session_state[key]


k = controls[1].slider("Neighbours (k)", 1, K_MAX, 8, key="search_k")
size = st.session_state.get(THUMBS_CHOSEN) or default_thumb_size(k)
size = controls[2].select_slider(
    "Thumbnails",
    list(THUMB_SIZES),
    value=size,
    # keyed by the size it starts at, so that k's default reaches it; its value is never set through the
    # session state: a browser re-mounting the slider (after a run without it) would send its default instead
    key=f"search_thumbs-{size}",
    on_change=choose_size,
    args=(f"search_thumbs-{size}",),
    help=" · ".join(f"{name}: {n} a row" for name, (n, _) in THUMB_SIZES.items())
    + f". Until you choose, {default_thumb_size(1)} for a few neighbours, {default_thumb_size(K_MAX)} for many.",
)

store = choose_store(controls[3])
opened = open_indexes(dataset["root"], sources[deep_key][1], store)
query = choose_query(dataset["root"], dataset["label"], dataset["classes"])
crumbs = st.container()  # drawn once the query is searched: a photo that cannot be searched stays off the trail
searched = query is not None and results_section(
    opened, *query, k=k, size=size, root=dataset["root"], dataset=dataset["label"]
)
if searched:
    st.session_state[TRAIL_KEY] = st.session_state.get(TRAIL_KEY, QueryTrail()).visit(st.session_state[QUERY_KEY])
with crumbs:
    breadcrumb(dataset["root"])
quality_section(opened, dataset["root"], k)

with st.expander("About the indexes"):
    for method, got in opened.items():
        st.markdown(f"- {got[1].describe()}" if isinstance(got, tuple) else f"- {method}: {got}")
    st.caption(
        f"Store: {store.describe()}. FAISS: exact flat indexes (L1: `METRIC_L1`; cosine: inner product of "
        f"L2-normalised vectors); above {IndexConfig().approx_threshold:,} images an approximate HNSW index is used "
        "and its recall against exact search is shown here. Milvus: a FLAT collection per dataset, method and "
        "embedder, searched by inner product. Indexes are rebuilt only when the dataset's files or the embedder "
        "change; added photos are embedded and added on their own."
    )
