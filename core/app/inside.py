"""The Look inside page's helpers (no streamlit here: the page keeps the widgets and the caching).

Which runs it explains (by default the browser's latest race), in the regimes' order; which run's features the
embedding map sets beside ImageNet's; where a photo handed over by Compare or Search is kept; and the map's
chart (Vega-Lite through altair: it draws a photo in a point's tooltip and reports the point a user clicks).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from core.models.regimes import REGIMES, is_baseline
from core.runs.store import RunRecord

PAGE = "app_pages/look_inside.py"
PHOTO_KEY = "look_photo"  # the session key of the page's :class:`core.app.photos.KeptPhoto`
MAX_RUNS = 4  # side by side: one a regime
# a fine-tuned run teaches most about what training changes: the map sets it beside the ImageNet features
MAP_PREFERENCE = ("full", "finetune", "transfer", "scratch")


def regime_of(run: RunRecord) -> str:
    return str(run.config.get("model", {}).get("regime", ""))


def in_regime_order(runs: Sequence[RunRecord]) -> List[RunRecord]:
    """Scratch, transfer, finetune, full (the order of :data:`REGIMES`), anything else after; stable."""
    order = {name: i for i, name in enumerate(REGIMES)}
    return sorted(runs, key=lambda r: order.get(regime_of(r), len(order)))


def explainable(runs: Sequence[RunRecord]) -> List[RunRecord]:
    """The runs a model can be loaded from: readable, with a checkpoint (a run saves one after its first epoch) and
    the config that says what it is (:func:`run_data`). Not the MLP baseline: it has no convolutions to look into."""
    usable = [r for r in runs if r.status != "corrupt" and r.has_checkpoint and not is_baseline(regime_of(r))]
    return [r for r in usable if _described(r)]


def _described(run: RunRecord) -> bool:
    try:
        run_data(run)
        return True
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def default_runs(runs: Sequence[RunRecord], owner: str) -> List[str]:
    """The run ids to explain until the user chooses: the runs of ``owner``'s newest launch that have a checkpoint,
    else of the newest launch that has any, else the newest runs with one; at most :data:`MAX_RUNS`, in the
    regimes' order. ``runs`` as :meth:`RunStore.list_runs` gives them (newest first)."""
    usable = explainable(runs)
    for pool in ([r for r in usable if owner and r.owner == owner], usable):
        groups = [r.config.get("group") for r in pool if r.config.get("group")]
        if groups:
            newest = max(groups)  # group ids sort by time
            return [r.run_id for r in in_regime_order([r for r in pool if r.config.get("group") == newest])][:MAX_RUNS]
    return [r.run_id for r in in_regime_order(usable[:MAX_RUNS])]


def map_run(runs: Sequence[RunRecord]) -> Optional[RunRecord]:
    """The run whose features the embedding map sets beside ImageNet's: the most fine-tuned one of ``runs``."""
    by_regime = {regime_of(r): r for r in reversed(list(runs))}  # the first of each regime wins
    return next((by_regime[name] for name in MAP_PREFERENCE if name in by_regime), None)


def run_data(run: RunRecord) -> Dict:
    """What explaining a run needs from its config: backbone, regime, classes, image size."""
    return {
        "backbone": run.config["model"]["backbone"],
        "regime": regime_of(run),
        "classes": list(run.config["resolved"]["classes"]),
        "img_size": int(run.config["data"]["img_size"]),
    }


def map_chart(frame, classes: Sequence[str], selected: Optional[str] = None, height: int = 380):
    """The embedding map as an altair chart: one dot a photo at (``x``, ``y``), coloured by ``label``; hovering
    shows ``image`` (a data URL) with the class and file; a click selects the dot's ``file`` (the page makes it the
    photo). ``selected``: a file to ring, the page's photo when it is in the map."""
    import altair as alt  # noqa: PLC0415 (lazy: only this page draws one)

    pick = alt.selection_point(name="photo", fields=["file"], on="click", clear=False)
    axis = alt.Axis(labels=False, ticks=False, title=None, grid=False, domain=False)
    dots = (
        alt.Chart(frame)
        .mark_circle(size=36, opacity=0.75)
        .encode(
            x=alt.X("x:Q", axis=axis, scale=alt.Scale(zero=False)),
            y=alt.Y("y:Q", axis=axis, scale=alt.Scale(zero=False)),
            color=alt.Color(
                "label:N",
                scale=alt.Scale(domain=list(classes), scheme="tableau10"),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=[alt.Tooltip("image:N"), alt.Tooltip("label:N", title="class"), alt.Tooltip("file:N")],
        )
        .add_params(pick)
    )
    layers = [dots]
    if selected is not None and (frame["file"] == selected).any():
        ring = (
            alt.Chart(frame[frame["file"] == selected])
            .mark_point(size=260, shape="circle", filled=False, strokeWidth=3, color="black")
            .encode(x="x:Q", y="y:Q")
        )
        layers.append(ring)
    return alt.layer(*layers).properties(height=height)
