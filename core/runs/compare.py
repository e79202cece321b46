"""Comparing runs: the accuracy table, the summary by regime and the per-epoch metrics, as pandas tables.

Every number comes from the run store (``summary.json`` when a run ended, else its ``metrics.jsonl`` so
far), so a run trained from the CLI, in another browser, or before a restart compares the same way.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from core.models.regimes import display_name, is_baseline, model_name
from core.runs.store import EPOCH_FIELDS, RunRecord, best_epoch_metrics, saved_augment

if TYPE_CHECKING:  # pandas' Styler imports jinja2: only the page that styles a table pays for it
    from pandas.io.formats.style import Styler

# The table's columns, in order; the metric columns say which direction is best (highlighted on the page).
TABLE_COLUMNS = (
    "regime",
    "backbone",
    "dataset",
    "seed",
    "epochs",
    "of",
    "image px",
    "augment",
    "trainable params",
    "total params",
    "best val acc",
    "best epoch",
    "test acc",
    "train s",
    "s/epoch",
    "status",
    "started",
    "run",
)
BEST_IS = {"best val acc": "max", "test acc": "max", "train s": "min", "s/epoch": "min"}
GROUP_KEYS = ("regime", "backbone", "dataset", "image px", "of", "augment")  # same recipe, differing only by seed
PERCENT_COLUMNS = ("best val acc", "test acc")
BEST_STYLE = "background-color: rgba(46, 160, 67, 0.28); font-weight: 600"  # a metric column's best value
READ_FIRST = ("regime", "test acc", "train s")  # the order a student reads a run in; the details follow
ALWAYS_SHOWN = (*READ_FIRST, "run")  # never folded into the caption, even when equal in every row
# How a column equal in every shown row is said in the caption above the table ("all runs: resnet18, 128 px").
CONSTANT_PHRASES = {
    "backbone": "{}",
    "dataset": "dataset {}",
    "seed": "seed {}",
    "epochs": "{} epochs done",
    "of": "{} epochs planned",
    "image px": "{} px",
    "augment": "augmentation {}",
    "trainable params": "{:,} trainable parameters",
    "total params": "{:,} parameters in all",
    "best val acc": "best validation accuracy {:.1%}",
    "best epoch": "best epoch {}",
    "s/epoch": "{:.2f} s per epoch",
    "status": "{}",
    "started": "started {}",
}


def dataset_name(source: str) -> str:
    """A short name for a run's data source: ``sample``, ``flowers``, or the folder's / .zip's name."""
    if not source or source in ("sample", "flowers"):
        return source or "?"
    path = Path(source)
    return path.stem if path.suffix.lower() == ".zip" else path.name


def run_label(run: RunRecord, with_backbone: bool = True) -> str:
    """How a run is named in pickers and legends: regime, (backbone,) seed and start time."""
    c = run.config
    rid = run.run_id  # "20261122-074512-transfer-resnet18-ab12"
    dated = rid[:8].isdigit() and rid[9:15].isdigit()
    stamp = f"{rid[4:6]}-{rid[6:8]} {rid[9:11]}:{rid[11:13]}:{rid[13:15]}" if dated else rid
    regime = c.get("model", {}).get("regime", "?")
    parts = [display_name(regime)]
    if with_backbone and not is_baseline(regime):  # "MLP baseline" says what the model is
        parts.append(c.get("model", {}).get("backbone", "?"))
    return " · ".join(parts + [f"seed {c.get('train', {}).get('seed', '?')}", stamp])


def local_time(iso: str) -> str:
    """ "2026-11-22 08:51" in this machine's time zone, from a stored UTC ISO time ("" when unknown)."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return ""


def run_model(config: Dict) -> str:
    """The "backbone" column: the CNN a run trained, or "mlp" for the MLP baseline (whatever its launch's
    backbone)."""
    m = config.get("model", {})
    return model_name(str(m.get("regime", "?")), m.get("backbone", "?"))


def run_row(run: RunRecord) -> Dict:
    """One table row. A run without a summary (running, or killed) shows its epochs so far."""
    c, s = run.config, run.summary
    resolved = c.get("resolved", {})
    best = best_epoch_metrics(run.metrics)
    trainable = s.get("trainable_params", resolved.get("trainable_params"))
    frozen = s.get("frozen_params", resolved.get("frozen_params"))
    total = s.get("total_params", trainable + frozen if trainable is not None and frozen is not None else None)
    train_s = s.get("train_seconds")
    if train_s is None and run.metrics:
        train_s = sum(m.get("seconds", 0.0) for m in run.metrics)
    return {
        "run": run.run_id,
        "status": run.status,
        "regime": c.get("model", {}).get("regime", "?"),  # "?": a corrupt run, still listed and filterable
        "backbone": run_model(c),
        "dataset": dataset_name(c.get("data", {}).get("source", "")),
        "seed": c.get("train", {}).get("seed"),
        "epochs": len(run.metrics),
        "augment": saved_augment(c.get("train", {})),
        "of": c.get("train", {}).get("epochs"),
        "image px": c.get("data", {}).get("img_size"),
        "trainable params": trainable,
        "total params": total,
        "best val acc": s.get("best_val_acc", best["val_acc"] if best else None),
        "best epoch": s.get("best_epoch", best["epoch"] if best else None),
        "test acc": s.get("test_acc"),
        "train s": train_s,
        "s/epoch": s.get("seconds_per_epoch", train_s / len(run.metrics) if train_s and run.metrics else None),
        "started": local_time(run.started_at),
    }


def runs_table(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run (as listed, newest first), columns :data:`TABLE_COLUMNS`; missing values are NaN."""
    df = pd.DataFrame([run_row(r) for r in runs], columns=list(TABLE_COLUMNS))
    for col in ("seed", "epochs", "of", "image px", "trainable params", "total params", "best epoch"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("best val acc", "test acc", "train s", "s/epoch"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df


def _seed_list(seeds: pd.Series) -> str:
    return ", ".join(str(s) for s in sorted(seeds.dropna().unique()))


def regime_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Finished runs grouped by recipe (regime, augmentation, backbone, dataset, image size, epochs), seeds pooled:
    regime × augment rows show augmentation's effect on each regime.

    Columns: the group keys, ``runs``, ``seeds``, ``mean test acc``, ``std`` (sample standard deviation;
    NaN for a single run), ``min``, ``max``, ``mean train s``, and ``accuracies`` (each run's). Best mean first.
    """
    if "augment" not in df:  # a table made before the choice existed: every run had the notebook's
        df = df.assign(augment="flip-rotate")
    done = df[(df["status"] == "finished") & df["test acc"].notna()]
    columns = list(GROUP_KEYS) + ["runs", "seeds", "mean test acc", "std", "min", "max", "mean train s", "accuracies"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    out = done.groupby(list(GROUP_KEYS), dropna=False, sort=False).agg(
        **{
            "runs": ("test acc", "size"),
            "seeds": ("seed", _seed_list),
            "mean test acc": ("test acc", "mean"),
            "std": ("test acc", "std"),  # ddof=1: NaN for a single run
            "min": ("test acc", "min"),
            "max": ("test acc", "max"),
            "mean train s": ("train s", "mean"),
            "accuracies": ("test acc", list),
        }
    )
    out = out.reset_index().sort_values("mean test acc", ascending=False, kind="stable")
    return out[columns].reset_index(drop=True)


def url_choice(raw: Sequence[str], options: Sequence[str]) -> Tuple[Optional[List[str]], List[str]]:
    """What a URL parameter's values (a shared link's) choose among ``options``: the known ones in the options'
    order, None when the parameter is absent or names none of them (the widget's default then), [] for a lone
    empty value (nothing chosen); and the unknown ones, to mention."""
    if not raw:
        return None, []
    if list(raw) == [""]:
        return [], []
    known = [o for o in options if o in raw]
    unknown = [v for v in dict.fromkeys(raw) if v not in options and v != ""]
    return (known or None), unknown


def url_values(chosen: Sequence[str], default: Sequence[str]) -> Optional[List[str]]:
    """A choice as a URL parameter's values: None (no parameter: a clean link) when it is the default, in any
    order; [""] when nothing is chosen; else the chosen values."""
    if set(chosen) == set(default):
        return None
    return [str(v) for v in chosen] or [""]


def per_class_table(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> pd.DataFrame:
    """Per true class (a row of ``confusion``, ``[true][predicted]`` counts): ``class``, ``test images``,
    ``right`` and ``accuracy`` (NaN for a class without images)."""
    counts = np.asarray(confusion, dtype=np.int64).reshape(len(classes), len(classes))
    total, right = counts.sum(axis=1), np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(total > 0, right / total, np.nan)
    return pd.DataFrame({"class": list(classes), "test images": total, "right": right, "accuracy": accuracy})


def styled_runs_table(df: pd.DataFrame) -> Styler:
    """:func:`runs_table` (or rows of it) formatted for reading, the best value of each metric column of
    :data:`BEST_IS` highlighted (ties all highlighted, missing values ignored)."""
    style = df.style
    for direction in ("max", "min"):
        cols = [c for c, d in BEST_IS.items() if d == direction and c in df]
        if cols:
            highlight = style.highlight_max if direction == "max" else style.highlight_min
            style = highlight(subset=cols, props=BEST_STYLE)
    fmt = {c: "{:.1%}" for c in PERCENT_COLUMNS}
    fmt.update({"train s": "{:.1f}", "s/epoch": "{:.2f}", "trainable params": "{:,}", "total params": "{:,}"})
    return style.format({c: f for c, f in fmt.items() if c in df}, na_rep="—")  # na_rep: every column


def constant_columns(df: pd.DataFrame) -> List[str]:
    """The columns of ``df`` (besides :data:`ALWAYS_SHOWN`) with one value in every row, a missing value
    counting as a value; none for fewer than two rows, where every column is trivially constant."""
    if len(df) < 2:
        return []
    return [c for c in df.columns if c not in ALWAYS_SHOWN and df[c].nunique(dropna=False) == 1]


def constant_caption(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """ "All runs: efficientnet_lite0, dataset flowers, 3 of 3 epochs, 128 px.": the value of each of ``columns``
    (equal in every row of ``df``) with its unit or meaning (:data:`CONSTANT_PHRASES`), in the table's order,
    then those missing in every row ("none yet: test acc"); "" for no columns."""
    if not len(df) or not columns:
        return ""
    first = df.iloc[0]
    ordered = [c for c in TABLE_COLUMNS if c in columns] + [c for c in columns if c not in TABLE_COLUMNS]
    known = [c for c in ordered if not pd.isna(first[c])]
    phrases = []
    for c in known:
        if c == "epochs" and "of" in known:
            phrases.append(f"{first['epochs']} of {first['of']} epochs")
        elif not (c == "of" and "epochs" in known):  # "of" is said with "epochs"
            phrases.append(CONSTANT_PHRASES.get(c, f"{c} {{}}").format(first[c]))
    unknown = [c for c in ordered if c not in known]
    if unknown:
        phrases.append(f"none yet: {', '.join(unknown)}")
    return f"All runs: {', '.join(phrases)}."


def readable_runs_table(df: pd.DataFrame) -> Tuple[pd.DataFrame, str]:
    """:func:`runs_table` (or rows of it) as a student reads it, and the caption of what it leaves out: the
    columns equal in every row are said once in the caption instead; the rest come in the order regime (its
    display name, with the CLI's name), test accuracy, training time, then the details. Row labels are kept."""
    hidden = constant_columns(df)
    order = [c for c in READ_FIRST if c in df] + [c for c in df.columns if c not in READ_FIRST and c not in hidden]
    shown = df[order].copy()
    if "regime" in shown:
        shown["regime"] = shown["regime"].map(lambda r: display_name(r, with_cli=True))
    return shown, constant_caption(df, hidden)


def readable_summary(summary: pd.DataFrame, hidden: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`regime_summary` as the page shows it: regimes by display name (with the CLI's name), planned epochs
    as ``epochs``, without the per-run accuracies (the chart shows those), and without ``hidden`` columns (those
    the runs table's caption already states)."""
    shown = summary.drop(columns=["accuracies", *[c for c in hidden if c in GROUP_KEYS]])
    shown["regime"] = shown["regime"].map(lambda r: display_name(r, with_cli=True))
    return shown.rename(columns={"of": "epochs"})


def spread_groups(summary: pd.DataFrame) -> List[Dict]:
    """The summary's rows as :func:`core.app.plots.regime_spread_figure` draws them, labelled by what differs."""
    varying = [k for k in ("augment", "backbone", "dataset", "image px", "of") if summary[k].nunique() > 1]
    suffix = {"image px": " px", "of": " epochs"}
    groups = []
    for _, row in summary.iterrows():
        extra = " · ".join(f"{row[k]}{suffix.get(k, '')}" for k in varying)
        groups.append(
            {
                "label": display_name(row["regime"]) + (f"<br>{extra}" if extra else ""),
                "regime": row["regime"],
                "mean": row["mean test acc"],
                "std": 0.0 if math.isnan(row["std"]) else row["std"],
                "accuracies": row["accuracies"],
            }
        )
    return groups


def seconds(s: float) -> str:
    """A duration for a sentence: "0.4 s", "35 s", "5 min 12 s"."""
    if s < 10:
        return f"{s:.1f} s"
    if s < 59.5:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


def shown_percent(x: float) -> str:
    """An accuracy as every verdict and table shows it: "91.2%"."""
    return f"{x:.1%}"


def tied(a: pd.Series, b: pd.Series) -> bool:
    """Whether two rows of :func:`regime_summary` are too close to call: equal at the shown precision, or (both
    pooled over two or more seeds) apart by no more than the larger standard deviation over seeds."""
    if shown_percent(a["mean test acc"]) == shown_percent(b["mean test acc"]):
        return True
    if a["runs"] < 2 or b["runs"] < 2:
        return False
    return abs(a["mean test acc"] - b["mean test acc"]) <= max(a["std"], b["std"])


def _names(rows: Sequence[pd.Series], accuracies: bool = False) -> str:
    """ "**A**, **B** and **C**", each with its accuracy in brackets when ``accuracies``."""
    names = [
        f"**{display_name(r['regime'])}**" + (f" ({shown_percent(r['mean test acc'])})" if accuracies else "")
        for r in rows
    ]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _tie_line(ties: List[pd.Series]) -> str:
    """The verdict's sentence for tied regimes (best mean first): the tie, then the cheapest as the better buy."""
    accuracies = {shown_percent(r["mean test acc"]) for r in ties}
    if len(accuracies) == 1:
        line = f"{_names(ties)} tie at {accuracies.pop()} test accuracy"
    else:
        noise = max(r["std"] for r in ties if r["runs"] > 1)
        line = f"{_names(ties, accuracies=True)} tie within the seeds' noise (std up to {noise * 100:.1f} points)"
    cheap, next_cheap = sorted(ties, key=_train_seconds)[:2]
    if not cheap["mean train s"] > 0 or not next_cheap["mean train s"] >= 1.1 * cheap["mean train s"]:
        return line + "." if math.isnan(next_cheap["mean train s"]) else line + " in about the same training time."
    ratio = next_cheap["mean train s"] / cheap["mean train s"]
    times = f"{seconds(cheap['mean train s'])} against {seconds(next_cheap['mean train s'])}"
    than = "" if len(ties) == 2 else f" than {_names([next_cheap])}, the next quickest"
    return (
        f"{line}; {display_name(cheap['regime'])} is the better buy: {ratio:.1f}× less training time{than} ({times})."
    )


def _train_seconds(row: pd.Series) -> float:
    """A sort key: the quickest first, unknown times last."""
    return math.inf if math.isnan(row["mean train s"]) else row["mean train s"]


def headline(summary: pd.DataFrame) -> List[str]:
    """One verdict per (dataset, backbone) of :func:`regime_summary`: which regime wins — or which tie (see
    :func:`tied`), the cheapest of them named the better buy — and what the quickest one reaches in its time.
    Regimes by display name. Works for any set of runs, one race's included (``headline(regime_summary(
    runs_table(records)))``); [] when none finished."""
    lines = []
    baseline = summary["regime"].map(is_baseline).astype(bool)
    for (dataset, backbone), g in summary[~baseline].groupby(["dataset", "backbone"], sort=False):
        # a baseline (its own model) competes in the verdict of every backbone on its dataset
        g = pd.concat([g, summary[baseline & (summary["dataset"] == dataset)]]).sort_values(
            "mean test acc", ascending=False, kind="stable"
        )
        rows = [row for _, row in g.iterrows()]  # sorted by mean test accuracy, best first
        best = rows[0]
        ties = [best] + [r for r in rows[1:] if tied(best, r)]
        if len(ties) > 1:
            line = f"On **{dataset}** with {backbone}, {_tie_line(ties)}"
        else:
            n = f"mean of {best['runs']} runs" if best["runs"] > 1 else "1 run"
            line = (
                f"On **{dataset}** with {backbone}, {_names([best])} wins: {shown_percent(best['mean test acc'])} "
                f"test accuracy ({n}) for {seconds(best['mean train s'])} of training."
            )
        cheap = min(rows, key=_train_seconds)
        if cheap.name not in {r.name for r in ties} and best["mean train s"] > 0:  # name: the row's label
            ratio = best["mean train s"] / max(cheap["mean train s"], 1e-9)
            line += (
                f" {_names([cheap])} reaches {shown_percent(cheap['mean test acc'])} in "
                f"{seconds(cheap['mean train s'])} — {ratio:.1f}× less training time."
            )
        lines.append(line)
    return lines


def epoch_metrics(runs: Sequence[RunRecord]) -> pd.DataFrame:
    """Every epoch of ``runs`` in one long table: run, regime, backbone, dataset, seed, then the metrics."""
    rows = []
    for r in runs:
        c = r.config
        ident = {
            "run": r.run_id,
            "regime": c.get("model", {}).get("regime"),
            "backbone": run_model(c),
            "dataset": dataset_name(c.get("data", {}).get("source", "")),
            "seed": c.get("train", {}).get("seed"),
        }
        for m in r.metrics:
            rows.append({**ident, **m})
    return pd.DataFrame(rows, columns=["run", "regime", "backbone", "dataset", "seed", *EPOCH_FIELDS])
