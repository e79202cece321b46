"""Train: pick regimes and a time budget (or the notebook's knobs), launch into the shared queue, and watch the
regimes race, live.

Everything shown live is read from the run store (the queue lives there too), so a reload, another tab or
another browser shows the same state. Training runs in the worker process, never in this script. Stop is
shown on the runs this browser session launched, and on every run in teacher mode. An ended launch can be
replayed (core.app.replay: drawn by the same functions as a live race), exported as a .zip and imported
(core.runs.archive; importing writes into the shared run store: teacher mode only).
"""

import time

import pandas as pd
import streamlit as st

from core.app.augment_strip import augment_strip
from core.app.jobs import NotYours, may_stop, shared_training
from core.app.live import (
    at_chance,
    chance_level,
    chance_note,
    ended_launches,
    group_view,
    launch_owner,
    progress_fraction,
    progress_text,
    race_timing,
    shown_launches,
)
from core.app.plots import CurveSeries, race_figure_cached
from core.app.replay import SPEEDS, launch_replay, replay_clock
from core.app.tasks import shared_tasks
from core.errors import TransferLabError
from core.models.backbones import BACKBONES, get_backbone
from core.models.regimes import BASELINES, REGIMES, describe_regimes, display_name, mlp_param_count
from core.runs.archive import export_launch_bytes, import_launch
from core.runs.compare import headline, regime_summary, runs_table, seconds
from core.settings import Settings
from core.training.augment import AUGMENT_TITLES, AUGMENTS
from core.training.config import BUDGET_PRESETS, PRESET_NAMES, RunConfig, apply_preset, new_group_id, preset_configs
from core.training.planner import (
    BASELINES_NOT_PLANNED,
    MAX_BUDGET_MINUTES,
    MIN_BUDGET_MINUTES,
    launch_configs,
    with_baselines,
)
from core.training.race import plan_for
from core.training.throughput import cached as cached_throughput
from core.training.throughput import probe

# While something trains, every viewer reruns the live panel every second and the chart every 3 s; with nothing
# training, one cheap check every 5 s for a launch from another browser (each rerun costs the server and every
# browser: benchmarks/bench_classroom.py).
LIVE_REFRESH_SECONDS = 1.0  # the progress bars
CHART_REFRESH_SECONDS = 3.0  # the race chart: it changes once an epoch, and costs far more to send
IDLE_REFRESH_SECONDS = 5.0  # nothing training: how soon another browser's launch shows
SETTINGS_KEY = "train_settings"  # the settings' expander: open until a launch, then folded under the race
REPLAY_KEY = "train_replay"  # the replay playing in this session: {"group", "speed", "started", "replay"}
PICKED_KEY = "train_earlier_launch"  # an earlier launch this session chose to show (and replay)
IMPORTED_KEY = "train_imported"  # {uploaded file id: (the launch imported, or None), the message shown}
STATE_ICONS = {
    "queued": "⏳",
    "running": "🏃",
    "finished": "✅",
    "interrupted": "⏹️",
    "failed": "❌",
    "cancelled": "🚫",
    "corrupt": "⚠️",
}

settings = Settings.from_env()
training = shared_training(settings)
owner, teacher = st.session_state.get("owner", ""), bool(st.session_state.get("teacher"))
dataset = st.session_state.get("dataset")
backbone = st.session_state.get("backbone") or "efficientnet_lite0"


@st.cache_data(show_spinner=False)
def regime_counts(backbone: str, num_classes: int, freeze) -> dict:
    """{regime: (trainable params, frozen params, frozen tensors)} — no weights are loaded."""
    return {
        name: (c.trainable, c.frozen, c.frozen_tensors)
        for name, c in describe_regimes(backbone, num_classes, freeze).items()
    }


@st.cache_data(show_spinner=False, max_entries=16)
def strip(source: str, setting: str, seed: int) -> tuple:
    """One photo of the dataset in 8 augmented views (core.app.augment_strip)."""
    return augment_strip(source, setting, settings, seed=seed)


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


# ------------------------------------------------------------------------------------------------- live


def stop(run_id: str) -> None:
    try:
        training.stop(run_id, owner, teacher)
    except NotYours as e:
        st.toast(str(e))


def stop_launch(group: str) -> None:
    """Stop every run of ``group`` that this browser may stop (queued ones are cancelled)."""
    runs = [r for r in group_view(group, training.runs()) if r.active and not r.stopping]
    for run in runs:
        if may_stop(run, owner, teacher):
            stop(run.run_id)


def shown_races() -> tuple:
    """(the launches shown, {launch: its runs}, whether any run of them is queued or training): every active
    launch, this browser's first, then its own ended one; with none active, its newest launch and the class's
    newest (core.app.live.shown_launches)."""
    stored = training.runs()  # the server's shared listing: one read of what changed, for every tab
    groups = shown_launches(stored, owner)
    known = {r.config.get("group") for r in stored}
    imported = [g for g, _ in st.session_state.get(IMPORTED_KEY, {}).values() if g in known and g not in groups]
    groups += list(dict.fromkeys(imported))  # the launches this session imported: shown to replay them
    picked = st.session_state.get(PICKED_KEY)
    if picked and picked in known and picked not in groups:
        groups.append(picked)  # an earlier launch chosen below, to replay or export it
    views = {group: group_view(group, stored) for group in groups}
    return groups, views, any(run.active for runs in views.values() for run in runs)


@st.fragment(run_every=LIVE_REFRESH_SECONDS)
def live_panel(group: str, shown: list) -> None:
    groups, views, _ = shown_races()
    if groups != shown or not any(run.active for run in views.get(group, ())):
        st.rerun()  # a launch started, or this one ended: the whole page again (order, buttons, verdict)
    race_rows(group, views[group])


@st.fragment(run_every=IDLE_REFRESH_SECONDS)
def watch_for_launch(shown: list) -> None:
    """Draws nothing: reruns the page once a launch (from any browser) is queued or training."""
    groups, _, active = shown_races()
    if active or groups != shown:
        st.rerun()


def launch_heading(group: str, runs: list, replaying: bool = False) -> None:
    who = launch_owner(runs)
    title = "Your race" if who and who == owner else "A race from another browser" if who else "A race"
    stoppable = [r for r in runs if r.active and not r.stopping and may_stop(r, owner, teacher) and not replaying]
    row = st.container(horizontal=True, vertical_alignment="center")
    row.subheader(title)
    if stoppable:
        row.button(
            "⏹ Stop all",
            key=f"stop-all-{group}",
            on_click=stop_launch,
            args=(group,),
            help="Stop every run of this launch: the running one after its current batch (kept as interrupted), "
            "the queued ones before they start.",
        )


def race_rows(group: str, runs: list, replaying: bool = False) -> None:
    """The launch's heading and one line per run; ``replaying``: a replay's frame, without Stop buttons."""
    launch_heading(group, runs, replaying)
    timing = race_timing(runs)
    if timing:
        st.caption(
            f"Planned to finish within **{seconds(timing['budget_seconds'])}** "
            f"(predicted {seconds(timing['predicted_seconds'])})"
            + (
                f" · {timing['done']} of {timing['runs']} done in {seconds(timing['actual_done_seconds'])}, "
                f"predicted {seconds(timing['predicted_done_seconds'])}"
                if timing["done"]
                else ""
            )
        )
    # One element per run (a line, or a progress bar whose text names the run), in a row with Stop only where
    # this browser may stop it: every viewer redraws this every second, and columns cost the server and each
    # browser more than the bars themselves (benchmarks/bench_viewers.py).
    others = False
    chance = chance_level(runs)
    for run in runs:
        name = f"{STATE_ICONS.get(run.state, '')} **{run.label}**"
        if run.state == "finished" and run.summary.get("test_acc") is not None:
            s = run.summary
            took = (
                f"took {s['wall_seconds']:.0f} s (planned {run.plan['predicted_seconds']:.0f} s)"
                if run.plan.get("predicted_seconds") is not None and s.get("wall_seconds")
                else f"trained in {s['train_seconds']:.0f} s"
            )
            st.markdown(
                f"{name} · test accuracy **{s['test_acc']:.1%}** · best val {s['best_val_acc']:.1%} "
                f"(epoch {s['best_epoch']}) · {took}"
            )
            for note in (s.get("setup") or {}).get("notes") or []:
                st.caption(f"⚠️ {note}")
        elif run.state in ("failed", "corrupt"):
            st.error(f"{name}: {run.error or run.state}")
        elif not run.active:  # interrupted, cancelled
            done = f" after {len(run.metrics)} epoch{'s' * (len(run.metrics) != 1)}" if run.metrics else ""
            st.markdown(f"{name} · {run.state}{done}")
        elif may_stop(run, owner, teacher) and not run.stopping and not replaying:
            row = st.container(horizontal=True, vertical_alignment="bottom")
            row.progress(progress_fraction(run), text=f"{name} · {progress_text(run)}")
            row.button(
                "Stop",
                key=f"stop-{run.run_id}",
                on_click=stop,
                args=(run.run_id,),
                help="Stop after the current batch; what it finished is kept as an interrupted run.",
            )
        else:
            others = others or not (run.stopping or replaying)
            suffix = "" if run.stopping or replaying else " · another browser's run"
            st.progress(progress_fraction(run), text=f"{name} · {progress_text(run)}{suffix}")
        if at_chance(run, chance):
            st.caption(f"🎲 {chance_note(run, chance)}")
    if others:
        st.caption("Only the browser that launched a run, or the teacher, can stop it.")


@st.fragment(run_every=CHART_REFRESH_SECONDS)
def live_chart(group: str) -> None:
    race_chart(group, group_view(group, training.runs()))


def race_chart(group: str, runs: list) -> None:
    shown = [run for run in runs if run.metrics]
    if shown:
        key = (group, tuple((run.run_id, len(run.metrics)) for run in shown))  # new curves: a new figure
        series = [CurveSeries(run.label, run.regime, run.metrics) for run in shown]
        figure = race_figure_cached(series, key, chance=chance_level(runs))
        st.plotly_chart(figure, key=f"race-{group}", width="stretch")
        st.caption(
            "Against each run's own clock: solid validation · dashed training · ★ best epoch (lowest "
            "validation loss) · dotted: chance, the accuracy of guessing. A run that reaches its accuracy further "
            "left bought it for less."
        )


def verdict(group: str) -> None:
    """Which regime won the ended launch, and which was the better buy (core.runs.compare.headline)."""
    records = [r for r in training.runs() if r.config.get("group") == group and r.status == "finished"]
    if len({r.config.get("model", {}).get("regime") for r in records}) < 2:
        return
    for line in headline(regime_summary(runs_table(records))):
        st.success(line, icon="🏁")


def results(group: str, runs: list) -> None:
    """An ended launch: its rows, its chart, the verdict, Replay, Export and the way to Compare (or its
    replay, while this session plays it)."""
    playing = st.session_state.get(REPLAY_KEY)
    if playing and playing["group"] == group:
        replay_panel(group)
        return
    race_rows(group, runs)
    race_chart(group, runs)
    verdict(group)
    launch_tools(group)
    st.page_link("app_pages/compare.py", label="Compare these runs with earlier ones →", icon="📊")


# ----------------------------------------------------------------------------------- replay, export, import


def start_replay(group: str) -> None:
    speed = st.session_state.get(f"replay-speed-{group}") or SPEEDS[1]
    replay = launch_replay(group, training.runs())
    st.session_state[REPLAY_KEY] = {"group": group, "speed": speed, "started": time.time(), "replay": replay}


def stop_replay() -> None:
    st.session_state.pop(REPLAY_KEY, None)


@st.fragment(run_every=LIVE_REFRESH_SECONDS)
def replay_panel(group: str) -> None:
    """One frame of the replay, drawn as a live race is: redrawn every second, the clock read from the time
    it started (no sleeps). At the end, the page again: the launch's results, verdict included."""
    state = st.session_state.get(REPLAY_KEY)
    if not state or state["group"] != group:
        st.rerun()
    replay, speed = state["replay"], state["speed"]
    clock = replay_clock(state["started"], speed, time.time())
    if replay.ended(clock):
        stop_replay()
        st.rerun()
    runs = replay.at(clock)
    race_rows(group, runs, replaying=True)
    row = st.container(horizontal=True, vertical_alignment="center")
    row.caption(f"▶️ Replay at **{speed}×** · {seconds(clock)} of {seconds(replay.duration)} (the launch's own "
                f"clock; time with nothing training is cut to a moment)")  # fmt: skip
    row.button("⏹ Stop replay", key=f"stop-replay-{group}", on_click=stop_replay)
    race_chart(group, runs)


def launch_tools(group: str) -> None:
    """Replay (at a chosen speed) and Export, for an ended launch."""
    row = st.container(horizontal=True, vertical_alignment="center")
    row.segmented_control("Replay speed", SPEEDS, default=SPEEDS[1], format_func=lambda s: f"{s}×",
                          key=f"replay-speed-{group}", label_visibility="collapsed")  # fmt: skip
    row.button("▶️ Replay", key=f"replay-{group}", on_click=start_replay, args=(group,),
               help="Play this launch's recorded race again, at the chosen speed: no training, no CPU.")  # fmt: skip
    weights = row.checkbox(
        "with weights",
        key=f"export-weights-{group}",
        help="Include each run's best.pt (needed to explain or evaluate the runs elsewhere).",
    )
    row.download_button(
        "⬇️ Export launch",
        data=lambda: export_launch_bytes(settings.runs_dir, group, weights),
        file_name=f"launch-{group}.zip",
        mime="application/zip",
        key=f"export-{group}",
        on_click="ignore",
        help="One .zip of its run folders, to import and replay on another machine.",
    )


def earlier_launches() -> None:
    """Any ended launch of the store, to show again above (and replay, or export): a race recorded last week, or
    one imported, for a class with no CPU or no time to spare."""
    launches = ended_launches(training.runs())
    with st.expander(f"🎞️ Earlier launches ({len(launches)})"):
        if not launches:
            st.caption("No launch has finished yet.")
            return
        st.selectbox(
            "Show a launch to replay or export it",
            list(launches),
            index=None,
            format_func=launches.get,
            key=PICKED_KEY,
            placeholder="Choose a launch",
            help="It is shown above with ▶️ Replay and ⬇️ Export launch.",
        )


def import_box() -> None:
    """Import a launch exported elsewhere (core.runs.archive checks it like an upload): teacher mode only,
    as it writes into the run store every browser shares."""
    with st.expander("📦 Import a launch"):
        if not teacher:
            st.caption("The teacher imports launches (teacher mode, in the sidebar).")
            return
        upload = st.file_uploader(
            "Import a launch (.zip)",
            type="zip",
            key="import_launch",
            help="A launch exported with ⬇️ Export launch or `python -m core export-launch`.",
        )
        if upload is None:
            return
        done = st.session_state.setdefault(IMPORTED_KEY, {})
        if upload.file_id not in done:  # once per upload: the widget keeps the file across reruns
            try:
                result = import_launch(upload, settings.runs_dir, shown_as=upload.name)
                training.listing.expire()
                done[upload.file_id] = (result["launch"], f"Imported {len(result['runs'])} run(s): replay it above.")
                st.rerun()  # the page again, with the imported launch shown
            except TransferLabError as e:
                done[upload.file_id] = (None, str(e))
        launch, message = done[upload.file_id]
        if launch:
            st.success(message)
        else:
            st.error(message)


def live_races(groups: list, views: dict) -> None:
    """Every active launch first on the page, each with its progress and chart, live."""
    for group in groups:
        if any(run.active for run in views[group]):
            live_panel(group, groups)
            live_chart(group)
        else:  # this browser's launch that has ended while another one trains
            results(group, views[group])


def ended_races(groups: list, views: dict) -> None:
    """Nothing training: the newest launch's results (drawn once), and a watch for the next launch."""
    if not groups:
        st.info("Nothing launched yet. Press **Run all four** to start a race.")
    for group in groups:
        results(group, views[group])
    watch_for_launch(groups)
    earlier_launches()
    import_box()


# --------------------------------------------------------------------------------------------- planning


def measured_throughput(precision: str = "auto"):
    """This machine's measured speed for the backbone: read back, or measured now under a progress bar (once per
    machine). None, with the reason shown, while a race is running (it would skew the measurement)."""
    found = cached_throughput(backbone, settings, precision)
    if found is not None:
        return found
    if training.busy():
        st.info(
            "Planning to a time budget needs one measurement of this machine's speed, which waits until the "
            "running training ends (it would skew it). Use the notebook recipe meanwhile.",
            icon="⏱️",
        )
        return None
    holder = st.empty()

    def poll(task):
        holder.progress(task.fraction, text=f"Measuring this machine once (a few seconds): {task.message}")

    try:
        return shared_tasks().run(
            f"probe|{backbone}|{precision}", lambda progress: probe(backbone, settings, precision, progress), poll
        )
    finally:
        holder.empty()


@st.cache_data(ttl=30, show_spinner=False, max_entries=32)
def planned(source: str, backbone: str, budget_minutes: int, regimes: tuple, seed: int, n_images: int):
    """The race plan (cached a little: planning re-checks which image sizes are already decoded)."""
    return plan_for(source, backbone, budget_minutes * 60, settings, regimes=list(regimes), seed=seed)


def plan_preview(regimes: list, budget_minutes: int, seed: int):
    """The plan of ``regimes`` as a table; the plan, or None (with the reason shown)."""
    if measured_throughput() is None:
        return None
    try:
        race = planned(dataset["source"], backbone, budget_minutes, tuple(regimes), seed, dataset["n"])
    except TransferLabError as e:
        st.error(str(e))
        return None
    rows = [{**p.row(), "regime": REGIMES[p.regime].title} for p in race.plan.runs]
    for row in rows:
        row["cached views"] = str(row["cached views"] or "—")  # only regimes with frozen layers cache them
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        column_config={
            "images": st.column_config.NumberColumn("training images", format="%d"),
            "px": "image px",
            "predicted s": st.column_config.NumberColumn(format="%d s"),
        },
    )
    st.caption(
        f"One after another, in this order, predicted **{seconds(race.plan.predicted_seconds)}** of "
        f"the {seconds(budget_minutes * 60)} budget on this machine. Fine-tuning runs first so that "
        f"transfer learning reuses its frozen layers' outputs: transfer's whole cost is that one pass over "
        f"the photos, its head trains in about a second. px a→b: trained small, the last epoch at full size."
    )
    return race


# ------------------------------------------------------------------------------------------------ page


def submit(configs) -> bool:
    try:
        training.submit(configs, owner)
    except TransferLabError as e:
        st.session_state["train_flash"] = str(e)
        return False
    st.toast(f"Queued {len(configs)} run(s).")
    st.session_state[SETTINGS_KEY] = False  # the race comes first now: fold the settings away
    return True


def launch(regimes) -> None:
    """A button's callback, so the rerun it starts already shows the launch first. It reads the settings
    as the run that drew the button had them (the widgets' values then)."""
    group = new_group_id()
    if budget_mode:
        try:
            plan = planned(dataset["source"], backbone, int(budget), tuple(regimes), int(seed), dataset["n"])
        except TransferLabError as e:
            st.session_state["train_flash"] = str(e)
            return
        for cfg in plan.configs:  # a copy from the cache: ours to change
            cfg.group, cfg.preset = group, preset
        submit(launch_configs(plan.configs, chosen_baselines, augment))
        return
    try:
        configs = preset_configs(dataset["source"], backbone, regimes, preset, epochs=int(epochs),
                                 img_size=int(img_size), batch_size=int(batch_size), lr=float(lr),
                                 freeze=int(freeze), seed=int(seed), group=group)  # fmt: skip
    except TransferLabError as e:
        st.session_state["train_flash"] = str(e)
        return
    submit(launch_configs(configs, chosen_baselines, augment))


st.title("🏋️ Train")
groups, views, active = shown_races()
if not dataset:
    st.warning("Choose a dataset in the sidebar first.")
    if active:  # a race launched earlier (or by another browser) is still shown
        live_races(groups, views)
        earlier_launches()
        import_box()
    else:
        ended_races(groups, views)
    st.stop()
st.caption(
    f"Dataset **{dataset['label']}** ({dataset['n']:,} images, {len(dataset['classes'])} classes) · "
    f"backbone **{BACKBONES[backbone].display}** — change them in the sidebar. The settings below are in the "
    "page's address: copy it to share them with the class."
)
if flash := st.session_state.pop("train_flash", None):
    st.error(flash)
if active:
    live_races(groups, views)
mine_active = any(launch_owner(runs) == owner and any(r.active for r in runs) for runs in views.values())

# Every setting is bound to the page's URL (bind="query-params"): a shared link opens the same settings.
settings_box = st.expander("⚙️ Settings: preset, regimes and plan", expanded=True, key=SETTINGS_KEY, on_change="rerun")
with settings_box:
    preset = st.radio(
        "Preset",
        PRESET_NAMES,
        horizontal=True,
        key="preset",
        bind="query-params",
        help="5 minutes / quick demo: a time budget. The app measures this machine once and plans each "
        "regime's image size, images and epochs to finish within it. "
        "notebook recipe: the course notebook's settings for every regime.",
    )
    budget_mode = preset in BUDGET_PRESETS
    k = preset.split()[0]  # switching preset resets the knobs to its defaults
    if budget_mode:
        c = st.columns([3, 1])
        budget = c[0].slider(
            "Time budget (minutes)",
            MIN_BUDGET_MINUTES,
            MAX_BUDGET_MINUTES,
            int(BUDGET_PRESETS[preset]),
            key=f"budget-{k}",
            bind="query-params",
            help="How long the class can wait for all the chosen regimes, one after another.",
        )
        seed = c[1].number_input("Seed", 0, 10_000, 0, key="seed", bind="query-params")
        freeze = get_backbone(backbone).notebook_freeze
    else:
        base = apply_preset(RunConfig(), preset)
        c = st.columns(6)
        epochs = c[0].number_input("Epochs", 1, 100, base.train.epochs, key=f"epochs-{k}", bind="query-params")
        img_size = c[1].number_input("Image size (px)", 32, 512, base.data.img_size, step=16, key=f"px-{k}",
                                     bind="query-params")  # fmt: skip
        batch_size = c[2].number_input("Batch size", 1, 256, base.train.batch_size, key=f"batch-{k}",
                                       bind="query-params")  # fmt: skip
        lr = c[3].number_input("Learning rate", 1e-6, 0.5, base.train.lr, format="%.0e", step=1e-4, key=f"lr-{k}",
                               bind="query-params")  # fmt: skip
        body_tensors = regime_counts(backbone, len(dataset["classes"]), None)["transfer"][2]
        freeze = c[4].number_input(
            "Frozen (finetune)",
            0,
            body_tensors,
            get_backbone(backbone).notebook_freeze,
            key=f"freeze-{backbone}",
            bind="query-params",
            help="The first N parameter tensors stay frozen in the finetune regime. "
            "The notebook freezes 50 of ResNet18's 62.",
        )
        seed = c[5].number_input("Seed", 0, 10_000, 0, key="seed", bind="query-params")

    # ------------------------------------------------------------------------------------------ regimes
    counts = regime_counts(backbone, len(dataset["classes"]), int(freeze))
    chosen = []
    cols = st.columns(4)
    for col, (name, regime) in zip(cols, REGIMES.items()):
        with col.container(border=True):
            if st.checkbox(f"**{regime.title}**", value=True, key=f"regime-{name}", bind="query-params"):
                chosen.append(name)
            st.caption(f"`{name}` · {regime.explanation}")
            trainable, frozen, _ = counts[name]
            st.markdown(f"trains **{fmt_params(trainable)}** · frozen {fmt_params(frozen)}")

    race = None
    if budget_mode and chosen:
        st.markdown(
            "**The plan**"
            + (
                ""
                if len(chosen) == len(REGIMES)
                else " for the selected regimes (*Run all four* plans all four in the same budget)"
            )
        )
        race = plan_preview(chosen, int(budget), int(seed))

    # ------------------------------------------------------------------------ baselines and augmentation
    mlp = BASELINES["mlp"]
    with st.container(border=True):
        add_baselines = st.checkbox(
            f"**Add baselines: {mlp.title}**",
            value=False,
            key="baselines",
            bind="query-params",
            help="One more run in the same race, after the regimes: " + mlp.explanation,
        )
        chosen_baselines = tuple(BASELINES) if add_baselines else ()
        if budget_mode:  # a planned race gives it scratch's images (core.training.planner.with_baselines)
            mlp_px = with_baselines(race.configs)[-1].data.img_size if race is not None else 224
        else:
            mlp_px = int(img_size)
        n_classes = len(dataset["classes"])
        st.caption(
            f"`mlp` · {mlp.explanation} At {mlp_px} px it has **{fmt_params(mlp_param_count(mlp_px, n_classes))}** "
            f"parameters ({fmt_params(mlp_param_count(224, n_classes))} at 224 px); the CNN "
            f"{BACKBONES[backbone].display} has **{fmt_params(counts['scratch'][0])}** at any size (it pools its "
            "features)." + (f" {BASELINES_NOT_PLANNED}" if budget_mode else "")
        )
    augment = st.radio(
        "Augmentation of the training photos",
        AUGMENTS,
        index=AUGMENTS.index("flip-rotate"),
        format_func=AUGMENT_TITLES.get,
        horizontal=True,
        key="augment",
        bind="query-params",
        help="off: the photos as they are. flip + rotate: the course notebook's random flip and small rotation. "
        "strong: a random crop of 35-100% of the photo, a flip, and brightness/contrast/saturation jitter. "
        "Every run of the launch uses it; Compare can set runs with different settings side by side.",
    )
    try:
        photo, strip_views = strip(dataset["source"], augment, int(seed))
        st.image(strip_views, width=80)
        st.caption(f"What the network gets: `{photo}` in {len(strip_views)} random views ({AUGMENT_TITLES[augment]}).")
    except TransferLabError as e:
        st.caption(f"No preview of the augmentation: {e}")

    if BACKBONES[backbone].weights_source(settings) is None:
        st.warning(
            f"{BACKBONES[backbone].display}: ImageNet weights are not on this machine. The ImageNet regimes "
            "download them when they start (needs internet); offline, pick EfficientNet-Lite0 in the sidebar. "
            f"`{display_name('scratch')}` needs no weights.",
            icon="⬇️",
        )
    unmeasured = budget_mode and cached_throughput(backbone, settings) is None  # planning needs the measurement
    busy_help = "Your race is still running: stop it (⏹ Stop all) or let it finish before launching another."
    buttons = st.container(horizontal=True, vertical_alignment="center")
    buttons.button(
        "▶ Run all four",
        type="primary",
        key="run_all",
        disabled=unmeasured or mine_active,
        on_click=launch,
        args=(list(REGIMES),),
        help=busy_help if mine_active else None,
    )
    buttons.button(
        "▶ Train selected",
        disabled=not chosen or (budget_mode and race is None) or mine_active,
        key="run_selected",
        on_click=launch,
        args=(chosen,),
        help=busy_help if mine_active else None,
    )
    if mine_active:
        buttons.caption(busy_help)

if not active:
    ended_races(groups, views)
else:
    earlier_launches()
    import_box()
