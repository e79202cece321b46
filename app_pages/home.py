"""Home: what the app shows, how to use it in class, the dataset at a glance, and the machine's state.

It paints without torch (the machine's state, drawn last, is the only part that needs it)."""

import streamlit as st

from core.app.machine import machine_state
from core.app.warmup import is_loaded
from core.data.sample import SAMPLE_CAVEAT
from core.settings import Settings

settings = Settings.from_env()
dataset = st.session_state.get("dataset")

st.title("🌼 Transfer Lab")
st.markdown(
    "**See transfer learning happen.** Train the same network four ways on photos of flowers and watch the "
    "regimes race: from **scratch**, **transfer** learning (ImageNet features frozen, a new last layer), "
    "**fine-tuning** the deeper layers, and fine-tuning **everything**.\n\n"
    "**In class:** 1. pick the dataset and backbone in the sidebar · 2. on **Train**, say how long the class "
    "can wait (*5 minutes* by default), press *Run all four* and watch the regimes race · 3. on **Compare**, "
    "read off which regime wins and what it cost · 4. on **Search**, upload a photo and see its nearest "
    "neighbours by raw pixels and by deep features: *why* ImageNet features transfer · 5. on **Quiz**, check "
    "what was learned, with questions answered by your own race. Runs are saved: close the laptop, reopen, they "
    "are still there."
)

if dataset:
    st.subheader(f"The dataset: {dataset['label']}")
    where = "" if dataset.get("upload") else f" — `{dataset['root']}`"  # an upload's copy in the cache means nothing
    st.caption(f"{dataset['n']:,} images in {len(dataset['classes'])} classes{where}")
    if dataset["source"] == "sample":
        st.info(SAMPLE_CAVEAT, icon="✏️")
    for name, paths in dataset["examples"].items():  # chosen once by the sidebar's cached scan
        st.markdown(f"**{name}** · {dataset['counts'][name]:,} images")
        cols = st.columns(len(paths) or 1)
        for col, path in zip(cols, paths):
            col.image(path, width="stretch")
else:
    st.warning("Choose a dataset in the sidebar to see it here.")

st.subheader("This machine")
if is_loaded("torch"):
    m = machine_state(settings)
else:  # the first visit to a fresh server: everything above painted without it
    with st.spinner("Loading PyTorch… (once per server start, a few seconds)"):
        m = machine_state(settings)
c1, c2, c3 = st.columns(3)
c1.metric("Device", m["device"].upper(), help=f"{m['cpu']} (best vector extension: {m['isa']})")
c2.metric("Threads", f"{m['torch_threads']} of {m['cpu_cores']} cores")
c3.metric("Precision", m["precision"], help="bf16 on CPUs with native bf16 support (about 2–3× faster), else fp32")
for name, src in m["imagenet_weights"].items():
    if src:
        st.markdown(f"✅ **{name}** ImageNet weights: {src}")
    else:
        st.markdown(f"⬇️ **{name}** ImageNet weights: not on this machine (downloaded on first use when online)")
