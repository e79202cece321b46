"""A report of chosen runs as one self-contained HTML file: it opens offline, from a disk or a mail, with no server.

What Compare shows, frozen: the verdict, the runs table, the curves and each run's confusion matrix (the same
figures, plotly.js inlined once, so they stay interactive), then per run the machine it trained on and the
command that trains it again (:func:`core.training.command.reproduce_command`). Everything read from the run
folders (notes, class names, paths, errors) is HTML-escaped. plotly.js makes most of the file (about 4.6 MB).
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import plotly.io as pio

from core.app.plots import CurveSeries, confusion_figure, curves_figure
from core.lru import LockedLRU
from core.runs.compare import (
    headline,
    per_class_table,
    readable_runs_table,
    regime_summary,
    run_label,
    runs_table,
    styled_runs_table,
)
from core.runs.predictions import load_predictions
from core.runs.store import RunRecord
from core.training.command import reproduce_command

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}  # no logo: it links to plotly.com
# The files whose change changes a report (the cache key of report_html).
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "summary.json", "predictions.json")
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1f2328; }
h1 { margin-bottom: 0.2rem; } .date { color: #656d76; margin-top: 0; }
.verdict { background: #dafbe1; border-left: 4px solid #2da44e; padding: 0.6rem 1rem; margin: 0.5rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border-bottom: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: left; }
pre { background: #f6f8fa; padding: 0.75rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.run { border-top: 2px solid #d0d7de; margin-top: 2rem; } .caption { color: #656d76; font-size: 0.85rem; }
.error { color: #cf222e; }
"""
# The machine a run trained on: config.json "resolved" (recorded at start) and summary.json "setup" (the engine's).
MACHINE_FIELDS = (
    ("CPU", "resolved", "cpu"),
    ("ISA", "resolved", "isa"),
    ("architecture", "resolved", "machine"),
    ("cores", "resolved", "cores"),
    ("torch threads", "setup", "threads"),
    ("device", "setup", "device"),
    ("precision", "setup", "precision"),
    ("frozen layers run by", "setup", "runtime"),
    ("feature cache", "setup", "feature_cache"),
    ("torch", "resolved", "torch"),
    ("Python", "resolved", "python"),
)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def markdown_bold(text: str) -> str:
    """A verdict line (markdown with ``**bold**``) as escaped HTML."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", esc(text))


def machine(run: RunRecord) -> List[Tuple[str, str]]:
    """(what, value) of the machine ``run`` trained on, as far as its files record it (older runs record less)."""
    sources = {"resolved": run.config.get("resolved") or {}, "setup": run.summary.get("setup") or {}}
    return [(name, str(sources[where][key])) for name, where, key in MACHINE_FIELDS if key in sources[where]]


def _figure(fig, first: List[bool]) -> str:
    """A figure as a ``<div>``; plotly.js inlined with the first one only."""
    out = pio.to_html(fig, include_plotlyjs=first[0], full_html=False, config=PLOTLY_CONFIG)
    first[0] = False
    return out


def _confusion(run: RunRecord) -> Optional[Tuple[List[List[int]], List[str], str]]:
    """The run's test confusion matrix, its classes and a sentence, from predictions.json (else its summary)."""
    preds = load_predictions(run.dir)
    if preds is not None and preds.n:
        return preds.confusion(), preds.classes, f"Test split: {preds.accuracy:.1%} of {preds.n} images right"
    cm, classes = run.summary.get("confusion"), run.summary.get("classes")
    if cm and classes and len(cm) == len(classes):
        return cm, classes, "Test split (from summary.json)"
    return None


def _per_class(cm: List[List[int]], classes: List[str]) -> str:
    """The per-class table as Compare shows it, as escaped HTML."""
    style = per_class_table(cm, classes).style.format({"accuracy": "{:.0%}"}, na_rep="—")
    return style.format(escape="html", subset=["class"]).hide(axis="index").to_html()


def run_section(run: RunRecord, label: str, first: List[bool]) -> str:
    """One run: what it is, its confusion matrix, the machine, the command that trains it again."""
    parts = [f'<section class="run" id="{esc(run.run_id)}"><h3>{esc(label)}</h3>']
    parts.append(f"<p>Run <code>{esc(run.run_id)}</code> · {esc(run.status)} · folder <code>{esc(run.dir)}</code></p>")
    if run.error:
        parts.append(f'<p class="error">{esc(run.error)}</p>')
    if run.config.get("note"):
        parts.append(f"<p>Note: {esc(run.config['note'])}</p>")
    confusion = _confusion(run)
    if confusion is not None:
        cm, classes, sentence = confusion
        parts.append(f"<h4>Confusion matrix</h4><p><strong>{esc(sentence)}</strong></p>")
        parts.append(_figure(confusion_figure(cm, classes), first))
        parts.append('<p class="caption">Rows: the true class · columns: what the model said.</p>')
        parts.append(_per_class(cm, classes))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in machine(run))
    parts.append(f"<h4>Machine</h4><table>{rows}</table>" if rows else "<h4>Machine</h4><p>Not recorded.</p>")
    parts.append(f"<h4>Train it again</h4><pre><code>{esc(reproduce_command(run.config))}</code></pre>")
    parts.append("</section>")
    return "\n".join(parts)


def build_report(runs: Sequence[RunRecord], title: str = "Transfer Lab report") -> str:
    """The report of ``runs`` (as listed, e.g. newest first) as one HTML document that needs no network."""
    runs = [r for r in runs if r.status != "corrupt"]
    several_backbones = len({r.config.get("model", {}).get("backbone") for r in runs}) > 1
    labels = {r.run_id: run_label(r, with_backbone=several_backbones) for r in runs}
    table = runs_table(runs)
    first = [True]
    body = [f"<h1>{esc(title)}</h1>", f'<p class="date">{esc(time.strftime("%Y-%m-%d %H:%M %Z"))} · '
            f"{len(runs)} run{'s' if len(runs) != 1 else ''}</p>"]  # fmt: skip
    verdict = headline(regime_summary(table))
    body.append("<h2>Verdict</h2>")
    body += [f'<p class="verdict">🏆 {markdown_bold(line)}</p>' for line in verdict] or ["<p>No finished runs.</p>"]
    shown, caption = readable_runs_table(table)
    text_columns = [c for c in shown.columns if shown[c].dtype == object]
    styled = styled_runs_table(shown).format(escape="html", subset=text_columns, na_rep="—").hide(axis="index")
    body += ["<h2>Runs</h2>", f'<p class="caption">{esc(caption)}</p>' if caption else "", styled.to_html()]
    series = [CurveSeries(labels[r.run_id], r.config.get("model", {}).get("regime", ""), r.metrics)
              for r in runs if r.metrics]  # fmt: skip
    body.append("<h2>Curves</h2>")
    if series:
        body.append(_figure(curves_figure(series), first))
        body.append('<p class="caption">★ best epoch (lowest validation loss: the checkpoint each run keeps).</p>')
    else:
        body.append("<p>No run has finished an epoch.</p>")
    body.append("<h2>Each run</h2>")
    body += [run_section(r, labels[r.run_id], first) for r in runs]
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _stamp(run: RunRecord) -> Tuple:
    out = []
    for name in RUN_FILES:
        try:
            out.append((Path(run.dir) / name).stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return (str(run.dir), *out)


_reports: LockedLRU[str] = LockedLRU(maxsize=4)


def report_html(runs: Sequence[RunRecord]) -> str:
    """:func:`build_report`, built once per set of runs and state of their files, for every viewer (the app's
    Download button: several browsers asking for the same runs share one build)."""
    return _reports.get_or_build(tuple(_stamp(r) for r in runs), lambda: build_report(runs))
