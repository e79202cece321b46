"""The live view of a launch, read from the run store (through the server's shared listing).

The run store is the only source of truth — a run launched from the CLI, by another browser session, or before
the app restarted shows up the same, queued runs included (the queue lives in the store: core.app.jobs).
Pages call :func:`latest_group` and :func:`group_view` about once a second; Compare starts from
:func:`latest_race`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from core.models.regimes import display_name
from core.runs.compare import dataset_name, local_time
from core.runs.store import ACTIVE, RunRecord


@dataclass
class LiveRun:
    label: str
    regime: str
    backbone: str
    state: str  # queued, running, finished, interrupted, failed, cancelled, corrupt
    run_id: str = ""
    position: Optional[int] = None  # 0 running, k >= 1 the k-th in the queue
    owner: str = ""  # the browser session that launched it
    stopping: bool = False  # Stop was pressed; it ends after the current batch
    run_dir: Optional[str] = None
    metrics: List[Dict] = field(default_factory=list)
    progress: Dict = field(default_factory=dict)
    summary: Dict = field(default_factory=dict)
    error: str = ""
    plan: Dict = field(default_factory=dict)  # a planned race's prediction for this run (core.training.planner)
    num_classes: int = 0  # known once the run has started (0 while queued)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def seconds(self) -> Optional[float]:
        """How long the run took, start to end (None until it ends)."""
        return self.summary.get("wall_seconds")


def latest_group(runs: List[RunRecord]) -> Optional[str]:
    """The newest launch group among ``runs`` (as listed by :meth:`RunStore.list_runs`)."""
    groups = {r.config.get("group") for r in runs} - {None, ""}
    return max(groups) if groups else None


def latest_race(runs: List[RunRecord], fallback: int = 4) -> List[str]:
    """The run ids of the newest launch group among ``runs`` (as listed, newest first), else of the
    ``fallback`` newest finished runs: what to compare when nothing is chosen yet."""
    group = latest_group(runs)
    if group is not None:
        return [r.run_id for r in runs if r.config.get("group") == group]
    return [r.run_id for r in runs if r.status == "finished"][:fallback]


def shown_launches(runs: List[RunRecord], owner: str) -> List[str]:
    """The launch groups the Train page shows: every launch with a run queued or training, ``owner``'s first,
    then the newest first, and after them ``owner``'s newest launch if it has ended (its results stay in view).
    With none active: ``owner``'s newest launch, then the newest launch of anyone else; [] for an empty store."""
    active = {r.config.get("group") for r in runs if r.active} - {None, ""}
    own = {r.config.get("group") for r in runs if owner and r.owner == owner} - {None, ""}
    own_newest = max(own, default=None)
    if not active:
        others_newest = latest_group([r for r in runs if not owner or r.owner != owner])
        return [g for g in (own_newest, others_newest) if g]
    newest_first = sorted(active, reverse=True)  # group ids sort by time
    shown = sorted(newest_first, key=lambda g: g not in own)  # stable: the owner's first, each part newest first
    return shown + ([own_newest] if own_newest is not None and own_newest not in active else [])


def ended_launches(runs: List[RunRecord]) -> Dict[str, str]:
    """Every launch with nothing queued or training and at least one finished run, newest first, with a label to
    pick it by ("2026-12-06 21:04 · flowers · efficientnet_lite0 · Transfer learning, Fine-tune everything"): what
    the Train page can replay, imported ones included."""
    members: Dict[str, List[RunRecord]] = {}
    for r in runs:
        if r.config.get("group"):
            members.setdefault(r.config["group"], []).append(r)
    out = {}
    for group in sorted(members, reverse=True):  # group ids sort by launch time
        rs = sorted(members[group], key=lambda r: (r.queued_at or 0, r.run_id))
        if any(r.active for r in rs) or not any(r.status == "finished" for r in rs):
            continue
        first = rs[0].config
        when = local_time(min((r.started_at for r in rs if r.started_at), default=""))
        regimes = ", ".join(dict.fromkeys(display_name(str(r.config.get("model", {}).get("regime"))) for r in rs))
        parts = [when, dataset_name(first.get("data", {}).get("source", "")), first.get("model", {}).get("backbone")]
        out[group] = " · ".join(str(p) for p in [*parts, regimes] if p)
    return out


def launch_owner(runs: List[LiveRun]) -> str:
    """The browser session that launched a group ("" from the command line)."""
    return next((r.owner for r in runs if r.owner), "")


def chance_level(runs: List[LiveRun]) -> Optional[float]:
    """Chance accuracy (1 / classes) for a launch's runs, once one of them knows its classes."""
    n = max((r.num_classes for r in runs), default=0)
    return 1.0 / n if n else None


AT_CHANCE_MARGIN = 0.1  # "at chance": less than a tenth of the way from chance to perfect accuracy


def at_chance(run: LiveRun, chance: Optional[float]) -> bool:
    """An ended run whose accuracy stayed at chance: its test accuracy (else its best validation accuracy) is
    less than ``AT_CHANCE_MARGIN`` of the way from chance to 100%."""
    if chance is None or run.active:
        return False
    acc = run.summary.get("test_acc")
    if acc is None:
        acc = max((m.get("val_acc") or 0.0 for m in run.metrics), default=None)
    return acc is not None and acc < chance + AT_CHANCE_MARGIN * (1 - chance)


def chance_note(run: LiveRun, chance: float) -> str:
    """One sentence on why a run sat at chance."""
    if run.regime == "scratch":
        return (
            f"{run.label} stayed at chance ({chance:.0%}, a guess among {round(1 / chance)} classes): a network from "
            "random weights must first learn to see edges and shapes, which takes many more epochs than the "
            "others get here, as they start from ImageNet's."
        )
    return f"{run.label} stayed at chance ({chance:.0%}): it learned nothing; try a lower learning rate."


def queue_positions(runs: List[RunRecord]) -> Dict[str, int]:
    """{run id: 0 when running, k for the k-th queued run} over the whole store, first in line first."""
    queued = sorted((r for r in runs if r.status == "queued"), key=lambda r: (r.queued_at or 0, r.run_id))
    return {**{r.run_id: 0 for r in runs if r.status == "running"}, **{r.run_id: k for k, r in enumerate(queued, 1)}}


def group_view(group: str, runs: List[RunRecord]) -> List[LiveRun]:
    """Every run of ``group`` among ``runs`` (the run store, listed once by the caller), in launch order."""
    members = [r for r in runs if r.config.get("group") == group]
    positions = queue_positions(runs) if any(r.active for r in members) else {}
    out = []
    for rec in sorted(members, key=lambda r: (r.queued_at or 0, r.run_id)):
        model = rec.config.get("model", {})
        out.append(
            LiveRun(
                label=display_name(str(model.get("regime"))),
                regime=model.get("regime", ""),
                backbone=model.get("backbone", ""),
                state=rec.status,
                run_id=rec.run_id,
                position=positions.get(rec.run_id),
                owner=rec.owner,
                stopping=rec.stop_requested and rec.active,
                run_dir=str(rec.dir),
                metrics=rec.metrics,
                progress=rec.progress,
                summary=rec.summary,
                error=rec.error,
                plan=rec.config.get("plan") or {},
                num_classes=len((rec.config.get("resolved") or {}).get("classes") or ()),
            )
        )
    return out


def race_timing(runs: List[LiveRun]) -> Optional[Dict]:
    """Planned against actual seconds of a planned race's runs so far, or None for an unplanned launch."""
    planned = [r for r in runs if r.plan.get("predicted_seconds") is not None]
    if not planned:
        return None
    done = [r for r in planned if r.seconds is not None]
    return {
        "budget_seconds": planned[0].plan.get("budget_seconds"),
        "predicted_seconds": sum(r.plan["predicted_seconds"] for r in planned),
        "done": len(done),
        "runs": len(planned),
        "predicted_done_seconds": sum(r.plan["predicted_seconds"] for r in done),
        "actual_done_seconds": sum(r.seconds for r in done),
    }


def progress_fraction(run: LiveRun) -> float:
    """0..1 through the whole run, from its live progress."""
    p = run.progress
    if run.state == "finished":
        return 1.0
    if p.get("phase") == "train" and p.get("epochs") and p.get("batches"):
        return min(1.0, ((p["epoch"] - 1) + p["batch"] / p["batches"]) / p["epochs"])
    return 0.0


def progress_text(run: LiveRun) -> str:
    p = run.progress
    if run.state == "queued":
        return f"queued — position {run.position}" if run.position else "queued"
    if run.state != "running":
        return run.state
    if run.stopping:
        return "stopping after this batch…"
    if p.get("phase") == "train":
        eta = p.get("eta_seconds") or 0
        return (
            f"epoch {p['epoch']}/{p['epochs']} · batch {p['batch']}/{p['batches']} · "
            f"{p.get('images_per_sec', 0):.0f} img/s · ETA {int(eta // 60)}:{int(eta % 60):02d}"
        )
    if p.get("message"):
        total = p.get("total")
        return f"{p['message']} ({p.get('done', 0)}/{total})" if total else p["message"]
    return "starting…"
