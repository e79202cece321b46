"""Train: pick regimes and knobs, launch into the shared queue, and watch the regimes race, live.

Everything shown live is read from the run store and the process-wide queue, so a reload, another tab or
another browser shows the same state. Training runs on the queue's worker thread, never in this script.
"""

import streamlit as st

from core.backbones import BACKBONES
from core.config import PRESETS, DataConfig, ModelConfig, RunConfig, apply_preset
from core.errors import TransferLabError
from core.jobs import shared_queue
from core.live import group_view, latest_group, new_group_id, progress_fraction, progress_text
from core.plots import CurveSeries, race_figure
from core.regimes import REGIMES, default_freeze, describe_regimes
from core.runstore import RunStore
from core.settings import Settings

LIVE_REFRESH_SECONDS = 1.0
STATE_ICONS = {"queued": "⏳", "running": "🏃", "finished": "✅", "interrupted": "⏹️", "failed": "❌",
               "cancelled": "🚫", "corrupt": "⚠️"}

settings = Settings.from_env()
dataset = st.session_state.get("dataset")
backbone = st.session_state.get("backbone") or "efficientnet_lite0"


@st.cache_data(show_spinner=False)
def regime_counts(backbone: str, num_classes: int, freeze) -> dict:
    """{regime: (trainable params, frozen params, frozen tensors)} — no weights are loaded."""
    return {name: (c.trainable, c.frozen, c.frozen_tensors)
            for name, c in describe_regimes(backbone, num_classes, freeze).items()}


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


# ------------------------------------------------------------------------------------------------- live


@st.fragment(run_every=LIVE_REFRESH_SECONDS)
def live_panel() -> None:
    stored, queue = RunStore(settings.runs_dir).list_runs(), shared_queue()  # read the store once a refresh
    group = latest_group(stored, queue)
    if group is None:
        st.info("Nothing launched yet. Press **Run all four** to start a race.")
        return
    runs = group_view(group, stored, queue)
    st.subheader("The race")
    for run in runs:
        c1, c2, c3 = st.columns([3, 7, 1], vertical_alignment="center")
        c1.markdown(f"{STATE_ICONS.get(run.state, '')} **{run.label}**")
        if run.state == "finished" and run.summary.get("test_acc") is not None:
            s = run.summary
            c2.markdown(f"test accuracy **{s['test_acc']:.1%}** · best val {s['best_val_acc']:.1%} "
                        f"(epoch {s['best_epoch']}) · trained in {s['train_seconds']:.0f} s")
        elif run.state in ("failed", "corrupt"):
            c2.error(run.error or run.state)
        else:
            c2.progress(progress_fraction(run), text=progress_text(run))
        if run.job_id:
            c3.button("Stop", key=f"stop-{run.job_id}", on_click=queue.stop, args=(run.job_id,),
                      help="Stop after the current batch; what it finished is kept as an interrupted run.")
    series = [CurveSeries(run.label, run.regime, run.metrics) for run in runs if run.metrics]
    if series:
        st.plotly_chart(race_figure(series), key="race", width="stretch")
        st.caption("Solid: validation · dashed: training · ★ best epoch (lowest validation loss).")
    if runs and not any(r.active for r in runs):
        st.page_link("app_pages/compare.py", label="Compare these runs with earlier ones →", icon="📊")


st.title("🏋️ Train")
if not dataset:
    st.warning("Choose a dataset in the sidebar first.")
    live_panel()  # a race launched earlier (or by another session) is still shown
    st.stop()
st.caption(f"Dataset **{dataset['label']}** ({dataset['n']:,} images, {len(dataset['classes'])} classes) · "
           f"backbone **{BACKBONES[backbone].display}** — change them in the sidebar.")

# ------------------------------------------------------------------------------------------------ knobs
preset = st.radio("Preset", list(PRESETS), horizontal=True, key="preset",
                  help="quick demo: small images, a subset, few epochs — minutes on a laptop. "
                       "notebook recipe: the course notebook's settings.")
base = apply_preset(RunConfig(), preset)
k = f"{preset}-{backbone}"  # switching preset or backbone resets the knobs to its defaults
c = st.columns(6)
epochs = c[0].number_input("Epochs", 1, 100, base.train.epochs, key=f"epochs-{k}")
img_size = c[1].number_input("Image size (px)", 32, 512, base.data.img_size, step=16, key=f"img-{k}")
batch_size = c[2].number_input("Batch size", 1, 256, base.train.batch_size, key=f"bs-{k}")
lr = c[3].number_input("Learning rate", 1e-6, 0.5, base.train.lr, format="%.0e", step=1e-4, key=f"lr-{k}")
body_tensors = regime_counts(backbone, len(dataset["classes"]), None)["transfer"][2]
freeze = c[4].number_input("Frozen (finetune)", 0, body_tensors, default_freeze(backbone), key=f"freeze-{k}",
                           help="The first N parameter tensors stay frozen in the finetune regime. "
                                "The notebook freezes 50 of ResNet18's 62.")
seed = c[5].number_input("Seed", 0, 10_000, 0, key=f"seed-{k}")
if base.data.limit_per_class:
    st.caption(f"This preset uses at most {base.data.limit_per_class} images per class.")

# ---------------------------------------------------------------------------------------------- regimes
counts = regime_counts(backbone, len(dataset["classes"]), int(freeze))
chosen = []
cols = st.columns(4)
for col, (name, regime) in zip(cols, REGIMES.items()):
    with col.container(border=True):
        if st.checkbox(f"**{regime.title}**", value=True, key=f"regime-{name}"):
            chosen.append(name)
        st.caption(regime.explanation)
        trainable, frozen, _ = counts[name]
        st.markdown(f"trains **{fmt_params(trainable)}** · frozen {fmt_params(frozen)}")


def launch(regimes) -> None:
    group = new_group_id()
    queue = shared_queue()
    try:
        for name in regimes:
            cfg = apply_preset(RunConfig(data=DataConfig(source=dataset["source"]),
                                         model=ModelConfig(backbone=backbone, regime=name)), preset)
            cfg.data.img_size, cfg.data.split_seed = int(img_size), int(seed)
            cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.seed = \
                int(epochs), int(batch_size), float(lr), int(seed)
            cfg.model.freeze = int(freeze) if name == "finetune" else None
            cfg.group = group
            queue.submit(cfg, settings, label=REGIMES[name].title)
    except TransferLabError as e:
        st.error(str(e))
        return
    st.toast(f"Queued {len(regimes)} run(s).")


if BACKBONES[backbone].weights_source(settings) is None:
    st.warning(f"{BACKBONES[backbone].display}: ImageNet weights are not on this machine. The ImageNet regimes "
               "download them when they start (needs internet); offline, pick EfficientNet-Lite0 in the sidebar. "
               "`From scratch` needs no weights.", icon="⬇️")
buttons = st.container(horizontal=True)
if buttons.button("▶ Run all four", type="primary", key="run_all"):
    launch(list(REGIMES))
if buttons.button("▶ Train selected", disabled=not chosen, key="run_selected"):
    launch(chosen)

live_panel()
