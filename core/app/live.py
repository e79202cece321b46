"""The live view of a launch: queued jobs (in this process's shared queue) merged with the run store.

The run store is the source of truth — a run launched from the CLI, by another browser session, or before
the app restarted shows up the same — and the queue adds what only it knows: queue positions, and the
ability to stop a job. Pages call :func:`latest_group` and :func:`group_view` about once a second;
Compare starts from :func:`latest_race`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from core.app.jobs import JobQueue
from core.models.regimes import REGIMES
from core.runs.store import RunRecord


@dataclass
class LiveRun:
    label: str
    regime: str
    backbone: str
    state: str  # queued, running, finished, interrupted, failed, cancelled, corrupt
    job_id: Optional[str] = None  # set when this process's queue can stop it
    position: Optional[int] = None  # 0 running, k >= 1 queued
    run_id: Optional[str] = None
    run_dir: Optional[str] = None
    metrics: List[Dict] = field(default_factory=list)
    progress: Dict = field(default_factory=dict)
    summary: Dict = field(default_factory=dict)
    error: str = ""
    plan: Dict = field(default_factory=dict)  # a planned race's prediction for this run (core.training.planner)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def seconds(self) -> Optional[float]:
        """How long the run took, start to end (None until it ends)."""
        return self.summary.get("wall_seconds")


def latest_group(runs: List[RunRecord], queue: Optional[JobQueue] = None) -> Optional[str]:
    """The newest launch group among ``runs`` (as listed by :meth:`RunStore.list_runs`) and ``queue``'s jobs."""
    groups = {r.config.get("group") for r in runs}
    if queue is not None:
        groups |= {j.config.group for j in queue.jobs()}
    groups.discard(None)
    groups.discard("")
    return max(groups) if groups else None


def latest_race(runs: List[RunRecord], fallback: int = 4) -> List[str]:
    """The run ids of the newest launch group among ``runs`` (as listed, newest first), else of the
    ``fallback`` newest finished runs: what to compare when nothing is chosen yet."""
    group = latest_group(runs)
    if group is not None:
        return [r.run_id for r in runs if r.config.get("group") == group]
    return [r.run_id for r in runs if r.status == "finished"][:fallback]


def group_view(group: str, runs: List[RunRecord], queue: Optional[JobQueue]) -> List[LiveRun]:
    """Every run of ``group`` among ``runs`` (the run store, listed once by the caller) and the queue,
    in launch order."""
    records = {r.run_id: r for r in runs if r.config.get("group") == group}
    out: List[LiveRun] = []
    for job in queue.jobs() if queue is not None else []:
        if job.config.group != group:
            continue
        rec = records.pop(job.run_id, None) if job.run_id else None
        state = job.state
        if rec is not None and not job.active:
            state = rec.status  # the store has the final word once the job is over
        out.append(
            LiveRun(
                label=job.label,
                regime=job.config.model.regime,
                backbone=job.config.model.backbone,
                state=state,
                job_id=job.id if job.active else None,
                position=queue.position(job.id),
                run_id=job.run_id,
                run_dir=job.run_dir,
                metrics=rec.metrics if rec else [],
                progress=(rec.progress if rec and rec.progress else job.progress),
                summary=rec.summary if rec else job.summary,
                error=job.error or (rec.error if rec else ""),
                plan=job.config.plan,
            )
        )
    for rec in sorted(records.values(), key=lambda r: r.run_id):  # runs this process did not launch
        model = rec.config.get("model", {})
        regime = REGIMES.get(model.get("regime", ""))
        out.append(
            LiveRun(
                label=regime.title if regime else str(model.get("regime")),
                regime=model.get("regime", ""),
                backbone=model.get("backbone", ""),
                state=rec.status,
                run_id=rec.run_id,
                run_dir=str(rec.dir),
                metrics=rec.metrics,
                progress=rec.progress,
                summary=rec.summary,
                error=rec.error,
                plan=rec.config.get("plan") or {},
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
