"""Plotly figures of training curves (no streamlit here: pages just show the figures).

:func:`race_figure` overlays runs in the same axes so the regimes race each other: loss on the left,
accuracy on the right, training dashed and validation solid, one colour per regime, the best epoch
(lowest validation loss) marked with a star.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, Hashable, List, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.lru import LockedLRU
from core.runs.store import best_epoch_metrics

REGIME_COLOURS = {
    "scratch": "#d62728",
    "transfer": "#1f77b4",
    "finetune": "#ff7f0e",
    "full": "#2ca02c",
    "mlp": "#7f7f7f",  # the MLP baseline: grey, a reference line rather than a contender
}
FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class CurveSeries:
    """One run's per-epoch metrics as read from its ``metrics.jsonl``."""

    label: str
    regime: str
    metrics: List[Dict] = field(default_factory=list)
    colour: Optional[str] = None

    def best_row(self) -> Optional[Dict]:
        """The best epoch's metrics (lowest validation loss), or None."""
        return best_epoch_metrics(self.metrics)


def colour_for(series: CurveSeries, index: int) -> str:
    return series.colour or REGIME_COLOURS.get(series.regime) or FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)]


def run_clock(metrics: Sequence[Dict]) -> List[float]:
    """Seconds into the run at the end of each epoch (the epochs' own durations, summed); the epoch numbers
    for rows that do not say how long they took."""
    if not all(m.get("seconds") for m in metrics):
        return [float(m["epoch"]) for m in metrics]
    return list(itertools.accumulate(float(m["seconds"]) for m in metrics))


def best_epoch_star(label: str, colour: str, x: float, best: Dict, key: str) -> go.Scatter:
    """The ★ marking a run's best epoch (lowest validation loss) at ``x``, at the height of its ``key``
    metric (e.g. ``val_acc``); named "<label> — best epoch", with the epoch number as its customdata."""
    return go.Scatter(
        x=[x],
        y=[best.get(key)],
        mode="markers",
        name=f"{label} — best epoch",
        legendgroup=label,
        showlegend=False,
        customdata=[best["epoch"]],
        marker=dict(symbol="star", size=15, color=colour, line=dict(color="white", width=1)),
        cliponaxis=False,
        hovertemplate=f"{label}: best epoch %{{customdata}} (lowest val loss), {key.replace('_', ' ')} "
        "%{y:.3f}<extra></extra>",
    )


class Traces:
    """Traces gathered for one ``add_traces`` call: plotly then validates the figure once, not per trace."""

    def __init__(self) -> None:
        self.traces: List[go.Scatter] = []
        self.rows: List[int] = []
        self.cols: List[int] = []

    def add(self, trace: go.Scatter, row: int, col: int) -> None:
        self.traces.append(trace)
        self.rows.append(row)
        self.cols.append(col)

    def into(self, fig: go.Figure) -> None:
        fig.add_traces(self.traces, rows=self.rows, cols=self.cols)


_race_figures: LockedLRU[go.Figure] = LockedLRU(maxsize=16)


def race_figure_cached(runs: Sequence[CurveSeries], key: Hashable, chance: Optional[float] = None) -> go.Figure:
    """:func:`race_figure`, built once per ``key`` (which must change when the curves do, e.g. the run ids and
    their numbers of epochs) for every viewer: building one costs the server more than anything else a live
    panel does."""
    return _race_figures.get_or_build((key, chance), lambda: race_figure(runs, chance=chance))


def race_figure(runs: Sequence[CurveSeries], height: int = 380, chance: Optional[float] = None) -> go.Figure:
    """Loss and accuracy against each run's own clock: what each regime reaches, and what it costs. ``chance``
    (1 / classes) draws the accuracy of guessing as a dotted line on the accuracy panel."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    traces = Traces()
    for i, run in enumerate(runs):
        colour = colour_for(run, i)
        clock = run_clock(run.metrics)
        epochs = [m["epoch"] for m in run.metrics]
        best = run.best_row()
        for col, key in ((1, "loss"), (2, "acc")):
            for split, dash in (("train", "dash"), ("val", "solid")):
                traces.add(
                    go.Scatter(
                        x=clock,
                        y=[m.get(f"{split}_{key}") for m in run.metrics],
                        mode="lines+markers",
                        name=f"{run.label} — {split}",
                        legendgroup=run.label,
                        showlegend=(col == 1),
                        customdata=epochs,
                        line=dict(color=colour, dash=dash, width=2.5 if split == "val" else 1.5),
                        marker=dict(size=5),
                        hovertemplate=f"{run.label} {split} {key}: %{{y:.3f}}<br>epoch "
                        "%{customdata} · %{x:.0f} s<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
            if best is not None:
                at = clock[epochs.index(best["epoch"])]
                traces.add(best_epoch_star(run.label, colour, at, best, f"val_{key}"), row=1, col=col)
    traces.into(fig)
    fig.update_xaxes(title_text="seconds of training", rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=2)
    if chance is not None:
        fig.add_hline(
            y=chance,
            line=dict(color="#7f7f7f", dash="dot", width=1.5),
            annotation_text=f"chance {chance:.0%}",
            annotation_position="bottom right",
            row=1,
            col=2,
        )
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        hovermode="closest",
        legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02),
    )
    return fig


def smooth(values: Sequence[Optional[float]], weight: float) -> List[Optional[float]]:
    """Exponential moving average with start-up bias correction (as TensorBoard's smoothing slider):
    ``weight`` 0 returns the values, closer to 1 smooths more. Missing values (None or NaN) stay missing and
    do not count: the average skips them."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    raw = np.array(values, dtype="float64")  # None -> NaN
    # adjust=True weights the terms (1 - alpha)^i over their sum: the bias-corrected EMA; ignore_na=True:
    # a missing value neither counts nor ages the ones before it
    avg = pd.Series(raw).ewm(alpha=1.0 - weight, adjust=True, ignore_na=True).mean().tolist()
    for i in np.flatnonzero(np.isnan(raw)):
        avg[i] = None
    return avg


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def curves_figure(runs: Sequence[CurveSeries], smoothing: float = 0.0, height: int = 400) -> go.Figure:
    """Validation accuracy and loss per epoch of ``runs`` overlaid: the smoothed curve (EMA, ``smoothing``
    in [0, 1)) drawn over the raw one in faint, a star at each run's best epoch (lowest validation loss).

    Runs of the same regime share its colour and differ by dash.
    """
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Validation accuracy", "Validation loss"), horizontal_spacing=0.08
    )
    traces = Traces()
    seen: Dict[str, int] = {}
    for i, run in enumerate(runs):
        colour = colour_for(run, i)
        dash = DASHES[seen.get(run.regime, 0) % len(DASHES)]
        seen[run.regime] = seen.get(run.regime, 0) + 1
        epochs = [m["epoch"] for m in run.metrics]
        best = run.best_row()
        for col, key in ((1, "val_acc"), (2, "val_loss")):
            raw = [m.get(key) for m in run.metrics]
            if smoothing > 0:
                traces.add(
                    go.Scatter(
                        x=epochs,
                        y=raw,
                        mode="lines",
                        line=dict(color=colour, width=1, dash=dash),
                        opacity=0.3,
                        name=f"{run.label} (raw)",
                        legendgroup=run.label,
                        showlegend=False,
                        hovertemplate=f"{run.label} raw {key}: %{{y:.3f}}<br>epoch %{{x}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
            traces.add(
                go.Scatter(
                    x=epochs,
                    y=smooth(raw, smoothing),
                    mode="lines+markers",
                    name=run.label,
                    legendgroup=run.label,
                    showlegend=(col == 1),
                    line=dict(color=colour, width=2.5, dash=dash),
                    marker=dict(size=4),
                    hovertemplate=f"{run.label} {key}{' (smoothed)' if smoothing else ''}: %{{y:.3f}}<br>"
                    "epoch %{x}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            if best is not None:
                traces.add(best_epoch_star(run.label, colour, best["epoch"], best, key), row=1, col=col)
    traces.into(fig)
    last_epoch = max((m["epoch"] for run in runs for m in run.metrics), default=1)
    fig.update_xaxes(title_text="epoch", range=[0.7, last_epoch + 0.3], dtick=1 if last_epoch <= 20 else None)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        hovermode="closest",
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0),
    )
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], height: int = 420) -> go.Figure:
    """The confusion matrix as a heatmap: rows the true class, columns the predicted one, each cell's count
    written in it and its colour the share of its true class (so small classes read as well as big ones).

    A transparent marker sits on every cell so that a click selects it (Streamlit's ``on_select`` reports
    scatter points, not heatmap cells): the selected point's ``y`` is the true class, ``x`` the predicted.
    """
    k = len(classes)
    rows = [sum(r) for r in confusion]
    share = [[(confusion[t][p] / rows[t]) if rows[t] else 0.0 for p in range(k)] for t in range(k)]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=list(classes),
            y=list(classes),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=[[str(v) for v in r] for r in confusion],
            texttemplate="%{text}",
            textfont=dict(size=15),
            colorbar=dict(title="share of<br>true class", tickformat=".0%"),
            hoverinfo="skip",
        )
    )
    xs, ys, data = [], [], []
    for t in range(k):
        for p in range(k):
            xs.append(classes[p])
            ys.append(classes[t])
            data.append([confusion[t][p], share[t][p]])
    fig.add_trace(
        go.Scatter(  # the hover text lives here too: plotly only clicks what it can hover
            x=xs,
            y=ys,
            customdata=data,
            mode="markers",
            showlegend=False,
            hovertemplate="true %{y}, predicted %{x}: %{customdata[0]} images (%{customdata[1]:.0%} of %{y})"
            "<extra></extra>",
            marker=dict(symbol="square", size=48, color="rgba(0,0,0,0)"),
            selected=dict(marker=dict(color="rgba(0,0,0,0)")),
            unselected=dict(marker=dict(opacity=1)),
        )
    )
    fig.update_xaxes(title_text="predicted", side="bottom", type="category")
    fig.update_yaxes(title_text="true", autorange="reversed", type="category")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), clickmode="event+select", dragmode=False)
    return fig


def regime_spread_figure(groups: Sequence[Dict], height: int = 340) -> go.Figure:
    """Test accuracy per recipe: a bar at the mean, whiskers at ± one standard deviation, and a dot per run
    (so a class sees the noise between seeds, not just one number).

    ``groups``: dicts with ``label``, ``regime``, ``mean``, ``std`` and ``accuracies`` (one per run), as
    :func:`core.runs.compare.spread_groups` makes them.
    """
    fig = go.Figure()
    for i, g in enumerate(groups):
        accs, mean, std = list(g["accuracies"]), g["mean"], g["std"]
        colour = REGIME_COLOURS.get(g["regime"], FALLBACK_COLOURS[i % len(FALLBACK_COLOURS)])
        fig.add_trace(
            go.Bar(
                x=[g["label"]],
                y=[mean],
                marker_color=colour,
                opacity=0.55,
                showlegend=False,
                error_y=dict(type="data", array=[std], visible=len(accs) > 1, thickness=2),
                hovertemplate=f"{g['label']}: mean %{{y:.1%}} ± {std:.1%} over {len(accs)} run(s)<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[g["label"]] * len(accs),
                y=accs,
                mode="markers",
                showlegend=False,
                marker=dict(color=colour, size=9, line=dict(color="white", width=1)),
                hovertemplate="one run: %{y:.1%}<extra></extra>",
            )
        )
    fig.update_yaxes(title_text="test accuracy", tickformat=".0%", range=[0, 1.05])
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), bargap=0.45)
    return fig


METHOD_COLOURS = {"l1": "#9e9e9e", "cosine": "#607d8b", "deep": "#2ca02c"}


def retrieval_quality_figure(rows: Sequence[Dict], chance: Optional[float] = None, height: int = 320) -> go.Figure:
    """precision@k and mAP@k per retrieval method, side by side. ``rows``: dicts with ``method``, ``label``,
    ``k``, ``precision_at_k``, ``map_at_k``; ``chance``: the precision@k of picking images at random."""
    fig = go.Figure()
    for key, name, pattern in (("precision_at_k", "precision@k", ""), ("map_at_k", "mAP@k", "/")):
        fig.add_trace(
            go.Bar(
                x=[r["label"] for r in rows],
                y=[r[key] for r in rows],
                name=name,
                text=[f"{r[key]:.0%}" for r in rows],
                textposition="outside",
                marker=dict(color=[METHOD_COLOURS.get(r["method"], "#1f77b4") for r in rows], pattern_shape=pattern),
                hovertemplate=f"%{{x}}: {name} = %{{y:.3f}} (k = {rows[0]['k'] if rows else ''})<extra></extra>",
            )
        )
    if chance is not None:  # a dotted line across the chart, named in the legend
        line = dict(dash="dot", color="#d62728", width=2)
        fig.add_hline(y=chance, line=line)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=line, name=f"random picks ({chance:.0%})"))
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        barmode="group",
        bargap=0.3,
        yaxis=dict(range=[0, 1.08], tickformat=".0%"),
        legend=dict(orientation="h", y=1.12),
    )
    return fig


RIGHT_COLOUR, OTHER_COLOUR = "#2ca02c", "#bdbdbd"


def answers_figure(counts: Dict[str, int], correct: Sequence[str], height: Optional[int] = None) -> go.Figure:
    """The class's answers to one quiz question: a horizontal bar per option (how many chose it), the correct
    option(s) green. ``counts``: ``{option: sessions}`` in the options' order (:meth:`core.quiz.tally.Tally.counts`)."""
    options = list(counts)
    fig = go.Figure(
        go.Bar(
            x=[counts[o] for o in options],
            y=[f"{i}. " + (o if len(o) <= 60 else o[:57] + "…") for i, o in enumerate(options, 1)],
            orientation="h",
            marker_color=[RIGHT_COLOUR if o in correct else OTHER_COLOUR for o in options],
            text=[counts[o] for o in options],
            textposition="auto",
            hovertext=options,
            hovertemplate="%{hovertext}: %{x}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="students", dtick=1, rangemode="tozero")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=height or 60 + 36 * len(options), margin=dict(l=10, r=10, t=10, b=10), bargap=0.3)
    return fig
