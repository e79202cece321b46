"""Transfer Lab — the Streamlit entry point: a router (``st.navigation``) plus the sidebar every page shares.

Run with ``streamlit run streamlit_app.py``. Pages live in ``app_pages/`` and only hold widgets; all logic
lives in ``core/``. The sidebar decides the dataset and backbone, shared with the pages through
``st.session_state["dataset"]`` and ``st.session_state["backbone"]``, and kept in the URL (``?dataset=sample|
flowers|folder&folder=<path>&backbone=<name>``) so that a link opens the same choice.

Nothing imported here (nor by Home) loads torch, timm or faiss: the first page paints in about a second, and
a background thread loads them afterwards (:mod:`core.app.warmup`).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

import streamlit as st

from core.app.jobs import shared_training
from core.app.machine import PREFERRED_BACKBONE, nothing_downloaded
from core.app.warmup import is_loaded, warm_up
from core.data.download import flowers_available
from core.data.flowers import FLOWERS_PHOTOS, FLOWERS_SIZE
from core.data.imagefolder import scan_image_folder
from core.data.sample import SAMPLE_CAVEAT
from core.data.sources import check_allowed, resolve_source, shared_folders
from core.data.uploads import evict_uploads, lease_source, save_upload
from core.errors import TransferLabError
from core.files import remove_stale_temporaries
from core.models.backbones import BACKBONES, pick_pretrained_backbone
from core.runs.store import RunStore, active_sources
from core.settings import Settings

st.set_page_config(page_title="Transfer Lab", page_icon="🌼", layout="wide")
settings = Settings.from_env()


@st.cache_resource(show_spinner=False)
def cleaned_at_start(folders: tuple) -> int:
    """Once per server process: remove temporary files that killed processes left behind."""
    return remove_stale_temporaries(folders)


cleaned_at_start(tuple(settings.written_folders()))
shared_training(settings)  # the first call resumes the queue the last server left
st.session_state.setdefault("owner", secrets.token_urlsafe(16))  # this browser session: it owns what it launches

DATASETS = ("Built-in sample", "Flowers (real photos)", "Local folder", "Upload a .zip")
# The dataset choices a link can carry (?dataset=...); an upload cannot be shared.
SHARED_DATASETS = {"sample": DATASETS[0], "flowers": DATASETS[1], "folder": DATASETS[2]}


@st.cache_data(ttl=30, show_spinner=False)
def describe(root: str, shown_as: str | None = None) -> dict:
    listing = scan_image_folder(Path(root), shown_as=shown_as)
    examples = {c: [str(p) for p in paths] for c, paths in listing.examples(per_class=6, seed=0).items()}
    return {
        "root": root,
        "classes": list(listing.classes),
        "counts": listing.counts(),
        "n": len(listing),
        "examples": examples,
    }


def _progress_bar(label: str):
    bar = st.progress(0.0, text=label)

    def update(done, total, message):
        bar.progress(
            min(1.0, done / total) if total else 0.0,
            text=f"{message}: {done / 1e6:.0f} / {total / 1e6:.0f} MB" if total and total > 1e5 else message,
        )

    return update


def choose_dataset() -> dict | None:
    """The sidebar's dataset picker; returns the dataset description or None (with the reason shown)."""
    choice = st.radio("Dataset", DATASETS, key="dataset_choice")
    source = root = shown_as = None
    label = choice
    if choice == DATASETS[0]:
        source = "sample"
        st.caption(f"✏️ {SAMPLE_CAVEAT}")
    elif choice == DATASETS[1]:
        if flowers_available(settings.cache_dir):
            source = "flowers"
        else:
            st.caption(f"The real dataset: {FLOWERS_PHOTOS:,} photos, {FLOWERS_SIZE / 1e6:.0f} MB, downloaded once.")
            if st.button("⬇️ Download flowers", key="download_flowers"):
                try:
                    root = resolve_source("flowers", settings, _progress_bar("downloading"))
                    source = "flowers"
                except TransferLabError as e:
                    st.error(str(e))
    elif choice == DATASETS[2]:
        shared = [str(r) for r in st.session_state["shared_folders"]]
        path = st.text_input("Folder with one sub-folder per class", key="folder_path", placeholder="/home/me/photos",
                             disabled=not shared)  # fmt: skip
        st.caption(f"Folders inside {', '.join(shared)}." if shared else "This server shares no folders: the "
                   "teacher can share some with TRANSFERLAB_DATA_ROOTS before starting the app.")  # fmt: skip
        source = path.strip() or None
        label = Path(source).name if source else choice
        if source is not None:
            try:
                source = str(check_allowed(source, st.session_state["shared_folders"], (settings.cache_dir,)))
            except TransferLabError as e:
                st.error(str(e))
                return None
    else:
        up = st.file_uploader("A .zip of a folder with one sub-folder per class", type=["zip"], key="zip_upload")
        if up is not None:
            try:
                source, label = str(save_upload(up.getvalue(), settings)), up.name
                shown_as = up.name  # messages name the user's file, not its copy in the cache
                with st.spinner("Preparing the dataset…"), lease_source(source, settings):
                    root = resolve_source(source, settings, shown_as=shown_as)  # extracted before eviction counts it
                if st.session_state.get("zip_evicted_for") != source:  # once per upload, not on every rerun
                    evict_uploads(settings, keep=[*active_sources(RunStore(settings.runs_dir).list_runs()), source])
                    st.session_state["zip_evicted_for"] = source
            except TransferLabError as e:
                st.error(str(e))
                return None
    if source is None:
        return None
    try:
        with st.spinner("Preparing the dataset…"):
            root = root or resolve_source(source, settings)
            info = describe(str(root), shown_as)
    except TransferLabError as e:
        st.error(str(e))
        return None
    return {**info, "source": source, "label": label, "upload": choice == DATASETS[3]}


def choose_backbone() -> str:
    default, reason = pick_pretrained_backbone(settings, PREFERRED_BACKBONE)
    st.session_state.setdefault("backbone_choice", default)  # set here, not by index=, as a link may set it first
    name = st.selectbox("Backbone", list(BACKBONES), key="backbone_choice", format_func=lambda n: BACKBONES[n].display)
    src = BACKBONES[name].weights_source(settings)
    if name == default != PREFERRED_BACKBONE:  # the offline fallback was picked: say why
        st.caption(f"ℹ️ {reason}")
    elif src:
        st.caption(f"ImageNet weights: {src}")
    else:
        st.caption(
            "ImageNet weights are not on this machine: they download on first use (needs internet). "
            "`scratch` works without them."
        )
    return name


def teacher_password() -> str | None:
    """TRANSFERLAB_TEACHER_PASSWORD, else ``teacher_password`` in .streamlit/secrets.toml; None when neither."""
    if settings.teacher_password:
        return settings.teacher_password
    try:
        return st.secrets.get("teacher_password") or None
    except FileNotFoundError:  # no secrets.toml
        return None


def teacher_mode() -> None:
    """Teacher mode (Stop on every run) for the session that knows the password. Without a password, the
    session is the teacher's when the server listens on this machine only, and nobody's otherwise."""
    password = teacher_password()
    if password is None:
        st.session_state["teacher"] = LOCAL_ONLY
        return
    if st.session_state.get("teacher"):
        st.caption("🎓 Teacher mode: you can stop every run.")
        return
    with st.expander("🎓 Teacher"):
        entered = st.text_input("Teacher password", type="password", key="teacher_password")
        if entered and hmac.compare_digest(entered.encode(), password.encode()):
            st.session_state["teacher"] = True
            st.rerun()
        elif entered:
            st.error("That is not the teacher password.")


def read_link() -> list[str]:
    """On a session's first run (its sidebar widgets have no state yet), take the dataset and backbone from the URL.
    Unknown values are ignored; a folder still goes through the shared-folders check when the picker reads it.
    Returns what was ignored, to say so in a caption."""
    ignored = []
    if "dataset_choice" not in st.session_state and "dataset" in st.query_params:
        wanted = st.query_params["dataset"]
        if wanted in SHARED_DATASETS:
            st.session_state["dataset_choice"] = SHARED_DATASETS[wanted]
            if wanted == "folder":
                st.session_state["folder_path"] = st.query_params.get("folder", "")
        else:
            ignored.append(f"dataset={wanted}")
    if "backbone_choice" not in st.session_state and "backbone" in st.query_params:
        wanted = st.query_params["backbone"]
        if wanted in BACKBONES:
            st.session_state["backbone_choice"] = wanted
        else:
            ignored.append(f"backbone={wanted}")
    return ignored


def set_param(name: str, value: str | None) -> None:
    """One key of the URL (the Train and Compare pages keep theirs beside it): set, or removed when None."""
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def write_link(backbone: str) -> None:
    """Keep the sidebar's choice in the URL, so that a copied link opens the same dataset and backbone."""
    shared = {v: k for k, v in SHARED_DATASETS.items()}.get(st.session_state["dataset_choice"])
    set_param("dataset", shared)
    folder = st.session_state.get("folder_path", "").strip() if shared == "folder" else ""
    set_param("folder", folder or None)
    set_param("backbone", backbone)


LOCAL_ONLY = st.get_option("server.address") in ("localhost", "127.0.0.1", "::1")  # no student can reach it
st.session_state["shared_folders"] = shared_folders(settings, LOCAL_ONLY)

with st.sidebar:
    st.markdown("### 🌼 Transfer Lab")
    offline_box = st.empty()  # filled last: a download made by this very run must hide it
    ignored = read_link()
    dataset = choose_dataset()
    if dataset:
        counts = " · ".join(f"{c} {n}" for c, n in dataset["counts"].items())
        st.caption(f"**{len(dataset['classes'])} classes, {dataset['n']:,} images** — {counts}")
    backbone = choose_backbone()
    if ignored:
        st.caption(f"Ignored from the link: {', '.join(ignored)} (not a choice here).")
    write_link(backbone)
    if nothing_downloaded(settings):
        offline_box.info(
            "Nothing downloaded: everything works offline on the built-in sample and the offline "
            "EfficientNet-Lite0 backbone.",
            icon="📴",
        )
    teacher_mode()
    with st.expander("Settings (environment variables)"):
        for var, value in settings.describe().items():
            st.markdown(f"`{var}`  \n{value}")

st.session_state["dataset"] = dataset
st.session_state["backbone"] = backbone

page = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("app_pages/train.py", title="Train", icon="🏋️"),
        st.Page("app_pages/compare.py", title="Compare", icon="📊"),
        st.Page("app_pages/search.py", title="Search", icon="🔎"),
        st.Page("app_pages/look_inside.py", title="Look inside", icon="🔬"),
        st.Page("app_pages/quiz.py", title="Quiz", icon="🧠"),
    ]
)
if page.title != "Home" and not is_loaded("torch"):  # the other pages import torch: wait for it, with words
    with st.spinner("Loading PyTorch… (once per server start, a few seconds)"):
        warm_up().join()
page.run()
warm_up()  # after the page has painted: load torch, timm and faiss in the background for Train and Search
