"""Plotly figures of training curves (no streamlit here: pages just show the figures).

:func:`race_figure` overlays runs in the same axes so the regimes race each other: loss on the left,
accuracy on the right, training dashed and validation solid, one colour per regime, the best epoch
(lowest validation loss) marked with a star.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

REGIME_COLOURS = {"scratch": "#d62728", "transfer": "#1f77b4", "finetune": "#ff7f0e", "full": "#2ca02c"}
FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class CurveSeries:
    """One run's per-epoch metrics as read from its ``metrics.jsonl``."""

    label: str
    regime: str
    metrics: List[Dict] = field(default_factory=list)
    colour: Optional[str] = None

    def best_epoch(self) -> Optional[int]:
        rows = [m for m in self.metrics if m.get("val_loss") is not None]
        return min(rows, key=lambda m: m["val_loss"])["epoch"] if rows else None


def colour_for(series: CurveSeries, index: int) -> str:
    return series.colour or REGIME_COLOURS.get(series.regime) or FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)]


def race_figure(runs: Sequence[CurveSeries], height: int = 380) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    for i, run in enumerate(runs):
        colour = colour_for(run, i)
        epochs = [m["epoch"] for m in run.metrics]
        best = run.best_epoch()
        for col, key in ((1, "loss"), (2, "acc")):
            for split, dash in (("train", "dash"), ("val", "solid")):
                fig.add_trace(go.Scatter(
                    x=epochs, y=[m.get(f"{split}_{key}") for m in run.metrics], mode="lines+markers",
                    name=f"{run.label} — {split}", legendgroup=run.label, showlegend=(col == 1),
                    line=dict(color=colour, dash=dash, width=2.5 if split == "val" else 1.5),
                    marker=dict(size=5), hovertemplate=f"{run.label} {split} {key}: %{{y:.3f}}<br>epoch %{{x}}"
                                                        "<extra></extra>",
                ), row=1, col=col)
            if best is not None:
                row = next(m for m in run.metrics if m["epoch"] == best)
                fig.add_trace(go.Scatter(
                    x=[best], y=[row.get(f"val_{key}")], mode="markers", name=f"{run.label} — best epoch",
                    legendgroup=run.label, showlegend=False,
                    marker=dict(symbol="star", size=15, color=colour, line=dict(color="white", width=1)),
                    cliponaxis=False,
                    hovertemplate=f"{run.label}: best epoch %{{x}} (lowest val loss)<extra></extra>",
                ), row=1, col=col)
    last_epoch = max((m["epoch"] for run in runs for m in run.metrics), default=1)
    fig.update_xaxes(title_text="epoch", dtick=1, range=[0.7, last_epoch + 0.3])
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), hovermode="closest",
                      legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02))
    return fig
