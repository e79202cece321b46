"""Replaying an ended launch: its runs as they were at any moment of the race, for the Train page to draw.

A :class:`Replay` is built once from a launch's run records (:func:`launch_replay`); :meth:`Replay.at` gives
the launch's :class:`~core.app.live.LiveRun` list at a replay clock (seconds since the replay started × its
speed), which the Train page draws with the very functions it draws a live race with: the runs queued, one
running with its progress bar and its epochs so far, the ended ones with their summary.

Where the moments come from: each run's timeline (``progress.jsonl``, see :mod:`core.runs.store`): when it
was queued, started and ended, when each epoch's row was appended, and progress snapshots (the bar moves
linearly between two of them). A run recorded before timelines existed is reconstructed: it started at
``status.json``'s ``started_at`` (or when the run before it ended), spent what its summary's
``wall_seconds`` has beyond its epochs' ``seconds`` preparing, then trained its epochs back to back, the bar
moving linearly through each epoch's batches.

Idle time is compressed: wherever no run of the launch was training (waiting for another launch's runs in the
queue, a launch spread over an afternoon), the replay waits at most ``IDLE_SECONDS``. Training time plays at
the chosen speed, so a replay at 16× of a 5-minute race lasts about 20 seconds.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from core.app.live import LiveRun, group_view
from core.runs.store import RunRecord, read_timeline

SPEEDS = (1, 4, 16)
IDLE_SECONDS = 2.0  # the longest a replay shows nothing training: longer idle gaps are cut to this
DEFAULT_BATCHES = 100  # a reconstructed run's batches per epoch when its config does not tell


@dataclass
class Track:
    """One run's recorded history, in seconds on a clock (wall clock when built, replay clock after
    :func:`_compressed`)."""

    queued: float
    start: float
    end: float
    epochs: List[float]  # when each metrics row appeared (as many as the run's metrics)
    snapshots: List[Tuple[float, Dict]] = field(default_factory=list)  # (when, progress dict), in time order
    batches: int = DEFAULT_BATCHES  # reconstructed runs only (no snapshots)
    epochs_planned: int = 0

    def moved(self, clock) -> Track:
        return replace(
            self,
            queued=clock(self.queued),
            start=clock(self.start),
            end=clock(self.end),
            epochs=[clock(t) for t in self.epochs],
            snapshots=[(clock(t), p) for t, p in self.snapshots],
        )


def _unix(iso: str) -> Optional[float]:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def _recorded(rec: RunRecord) -> Optional[Track]:
    """The track of a run with a timeline that saw it start and end; None otherwise."""
    timeline = read_timeline(rec.dir)
    status = [(e["at"], e["status"]) for e in timeline if isinstance(e.get("status"), str)]
    starts = [t for t, s in status if s == "running"]
    ends = [t for t, s in status if s not in ("queued", "running")]
    if not ends:
        return None
    end = ends[-1]
    start = starts[0] if starts else end
    queued = min([t for t, s in status if s == "queued"] + [start])
    epoch_at = {e["epoch"]: e["at"] for e in timeline if isinstance(e.get("epoch"), int)}
    if any(m["epoch"] not in epoch_at for m in rec.metrics):
        return None  # rows the timeline missed (a failed write): reconstruct instead
    snapshots = [(e["at"], e["progress"]) for e in timeline if isinstance(e.get("progress"), dict)]
    return Track(queued, start, end, [epoch_at[m["epoch"]] for m in rec.metrics], sorted(snapshots, key=lambda s: s[0]))


def _reconstructed(rec: RunRecord, after: float) -> Track:
    """The track of a run without a (complete) timeline, from its start time, epochs and summary; ``after``:
    when the run before it ended, its start when its own is unknown."""
    train = [float(m.get("seconds") or 0.0) for m in rec.metrics]
    wall = rec.summary.get("wall_seconds")
    wall = float(wall) if isinstance(wall, (int, float)) else sum(train)
    start = _unix(rec.started_at)
    start = after if start is None else start
    setup = max(0.0, wall - sum(train))
    epochs, t = [], start + setup
    for s in train:
        t += s
        epochs.append(t)
    cfg_train = rec.config.get("train", {})
    sizes = rec.summary.get("split_sizes") or (rec.config.get("resolved") or {}).get("split_sizes") or {}
    n_train = sizes.get("train")
    batch = cfg_train.get("batch_size")
    batches = math.ceil(n_train / batch) if isinstance(n_train, int) and isinstance(batch, int) and batch > 0 else 0
    queued = rec.queued_at / 1e9 if rec.queued_at else start
    return Track(min(queued, start), start, max(t, start + wall), epochs, [], batches or DEFAULT_BATCHES,
                 int(cfg_train.get("epochs") or len(train)))  # fmt: skip


def _compressed(tracks: Sequence[Track]) -> Callable[[float], float]:
    """A map from the wall clock to the replay clock: 0 at the first run's launch, training time as it was,
    each stretch with no run training cut to at most ``IDLE_SECONDS``."""
    origin = min(t.queued for t in tracks)
    busy = sorted((t.start, t.end) for t in tracks if t.end > t.start)
    merged: List[List[float]] = []
    for a, b in busy:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    # breakpoints: (wall time where a busy stretch starts, replay time there)
    starts, replay_starts, cut = [], [], 0.0
    prev_end = origin
    for a, b in merged:
        gap = max(0.0, a - prev_end)
        cut += gap - min(gap, IDLE_SECONDS)
        starts.append(a)
        replay_starts.append(a - origin - cut)
        prev_end = max(prev_end, b)

    def clock(wall: float) -> float:
        i = bisect.bisect_right(starts, wall) - 1
        if i < 0:  # before any training: the idle start, itself cut
            return min(max(0.0, wall - origin), IDLE_SECONDS)
        a, b = merged[i]
        if wall <= b:
            return replay_starts[i] + (wall - a)
        return replay_starts[i] + (b - a) + min(wall - b, IDLE_SECONDS)

    return clock


def _interpolated(snapshots: List[Tuple[float, Dict]], clock: float) -> Dict:
    """The progress snapshot in force at ``clock``, its batch moved on linearly toward the next snapshot of the
    same epoch."""
    i = bisect.bisect_right([t for t, _ in snapshots], clock) - 1
    if i < 0:
        return {}
    t0, p = snapshots[i]
    if i + 1 < len(snapshots) and p.get("phase") == "train":
        t1, q = snapshots[i + 1]
        if q.get("phase") == "train" and q.get("epoch") == p.get("epoch") and t1 > t0:
            batch = p["batch"] + (q["batch"] - p["batch"]) * (clock - t0) / (t1 - t0)
            return {**p, "batch": int(batch)}
    return dict(p)


def _synthetic(track: Track, clock: float, metrics: List[Dict]) -> Dict:
    """A reconstructed run's progress at ``clock``: preparing until its first epoch starts, then linear through
    each epoch's batches."""
    first = track.epochs[0] - float(metrics[0].get("seconds") or 0.0) if metrics else track.end
    if clock < first:
        return {"phase": "data", "done": 0, "total": None, "message": "preparing the data"}
    k = bisect.bisect_right(track.epochs, clock)  # epochs done
    if k >= len(track.epochs):
        return {}
    begin = track.epochs[k - 1] if k else first
    span = max(track.epochs[k] - begin, 1e-9)
    batch = max(1, min(track.batches, int(track.batches * (clock - begin) / span)))
    remaining = (track.epochs[k] - clock) + sum(float(m.get("seconds") or 0) for m in metrics[k + 1 :])
    return {
        "phase": "train",
        "epoch": k + 1,
        "epochs": max(track.epochs_planned, len(metrics)),
        "batch": batch,
        "batches": track.batches,
        "images_per_sec": metrics[k].get("images_per_sec") or 0.0,
        "eta_seconds": max(0.0, remaining),
    }


class Replay:
    """An ended launch on the replay clock. ``final``: the launch's runs as they ended (group_view)."""

    def __init__(self, final: List[LiveRun], tracks: List[Track]):
        self.final, self.tracks = final, tracks
        self.duration = max((t.end for t in tracks), default=0.0)

    def ended(self, clock: float) -> bool:
        return clock >= self.duration

    def at(self, clock: float) -> List[LiveRun]:
        """The launch's runs as they were ``clock`` replay seconds after it was launched."""
        out = []
        for run, track in zip(self.final, self.tracks):
            if clock >= track.end:
                out.append(run)
            elif clock < track.start:
                out.append(replace(run, state="queued", metrics=[], progress={}, summary={}, error="",
                                   stopping=False))  # fmt: skip
            else:
                metrics = run.metrics[: bisect.bisect_right(track.epochs, clock)]
                progress = (
                    _interpolated(track.snapshots, clock) if track.snapshots else _synthetic(track, clock, run.metrics)
                )
                out.append(replace(run, state="running", metrics=metrics, progress=progress, summary={}, error="",
                                   stopping=False))  # fmt: skip
        k = 0
        for r in out:  # queue positions as they were: 0 training, k the k-th waiting
            k += r.state == "queued"
            r.position = 0 if r.state == "running" else k if r.state == "queued" else None
        return out


def launch_replay(group: str, runs: List[RunRecord]) -> Replay:
    """The replay of launch ``group`` from the run store's records ``runs`` (its runs must have ended)."""
    final = [replace(r, position=None, stopping=False) for r in group_view(group, runs)]
    records = {r.run_id: r for r in runs}
    tracks, after = [], None
    for run in final:
        rec = records[run.run_id]
        track = _recorded(rec)
        if track is None:
            base = after if after is not None else (_unix(rec.started_at) or (rec.queued_at or 0) / 1e9)
            track = _reconstructed(rec, base)
        tracks.append(track)
        after = max(after or track.end, track.end)
    if tracks:
        clock = _compressed(tracks)
        tracks = [t.moved(clock) for t in tracks]
    return Replay(final, tracks)


def replay_clock(started: float, speed: float, now: float) -> float:
    """The replay clock ``now`` (seconds, any clock) for a replay started at ``started`` at ``speed``×."""
    return max(0.0, now - started) * speed
