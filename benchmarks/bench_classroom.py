"""A classroom's load on the app: ``streamlit run`` on a free port, 30 headless browser sessions (Playwright, one
Chromium) browsing Home, Train, Compare and Search while one four-regime race runs, ~100 other runs in the store.

What it reports (issue 13 §6), with the targets on 2 cores:

* **page load**, p50 and p95 per page: from the click on the page's link in the sidebar until the page's title
  is shown *and* the server's "script finished" message for that run has arrived (the browser timestamps both
  in the page, ``performance.now()``; the websocket messages are read by a small hook installed before the app
  loads). Target p95 ≤ 3 s, judged on the loads made while the race runs. A student opens the app once and then
  moves through the sidebar, so only the first open is a full page load (reported on its own row).
* **the live panel's refresh interval** as the browsers see it: on Train, the time between two successive
  "fragment run finished" messages of the live panel (it asks to rerun every second). Target p95 ≤ 2 s. The
  time between changes of the progress bars' text is shown too: it also waits for the trainer, which writes
  its progress at most once a second and only at the end of a batch.
* **the server's side** of both (a ``streamlit run`` launcher with two hooks logs when each session's rerun
  request arrives and when its run ends): on this 2-core machine the 31 browsers wait for CPU themselves, which a
  classroom's browsers, each on its own machine, do not. The targets are also judged on the server's p95 plus
  what one browser adds when it has the machine to itself (5 loads of each page after the race).
* **the race's wall time** with 30 viewers against the same race with no viewer but the teacher's screen: from
  the start of its first run to the end of its last, read from the run store (``summary.json``: its mtime is
  the run's end, minus ``wall_seconds`` its start). Target: slowed by ≤ 15%.

How a benchmark goes, everything in fresh temporary folders (``TRANSFERLAB_RUNS_DIR``, ``TRANSFERLAB_CACHE_DIR``;
``--cache-dir`` reuses a cache):

1. **The store**: one tiny real run (``python -m core train``: transfer, the built-in sample, 64 px, 1 epoch),
   copied ``--runs`` times under new run ids and launch groups (older than any race, so the race stays the
   newest; ``best.pt`` hard-linked).
2. **The server**: ``streamlit run streamlit_app.py`` on 127.0.0.1 (every session is the teacher's), with any
   ``--st option=value``. In a classroom the browsers run on the students' machines, not on the teacher's cores,
   so the machine is split (CPU affinity, inherited by every child): the server and its training worker get the
   first ``--server-cores`` cores (default: half of them; 1 of 2 here, a stricter test than the targets' 2 cores),
   this process, Playwright's driver and Chromium the others (``--server-cores 0`` shares every core). The
   students' Chromium runs at ``nice 19`` (through a launcher that also takes away its right to renice itself
   back up), the teacher's at normal priority: the projector is a machine of its own too, and its click starts
   the race. (Under ``kernel.sched_autogroup_enabled`` nice does not rank processes of different sessions: with
   shared cores the 31 browsers take most of the server's CPU.)
3. **Warm-up race, not measured**: the teacher's session opens Train, picks the *quick demo* preset (a 2-minute
   budget: the first visit measures this machine once), presses *Run all four*; then opens Compare and Search
   (the first Search builds its indexes). Both measured races then find the same warm caches (decoded images,
   frozen features, the machine's measurement) and the same plan.
4. **Baseline race**: launched the same way; the teacher's page stays on Train (the projector), nothing else.
5. **Loaded race**: ``--sessions`` students open the app (ramped over ``--ramp`` seconds), then the teacher
   launches the race. Each student, its app open on Home, loops Train → Compare → Search → Home: on Train it
   watches the live panel for ``--watch`` seconds while the race runs; between pages it waits ``--think``
   seconds (a fixed think time, the only sleeps here: everything else waits on page state). Students stop once
   the race has ended and they have done ``--rounds`` rounds (those still loading a page 5 minutes later are
   stopped). A race not over ``--race-timeout`` seconds after its launch is given up on: its wall time is then
   reported as a lower bound.

``--profile`` samples the server with py-spy during the loaded race and adds where its threads spent the time.
The app offers no precision choice (the race uses ``auto``), so there is no ``--precision``. Needs Playwright for
Python and Debian's ``/usr/bin/chromium`` (``pip install playwright``; no ``playwright install``).

    python benchmarks/bench_classroom.py                    # 30 sessions, 100 runs: 15 minutes and more
    python benchmarks/bench_classroom.py --quick            # 5 sessions, 10 runs, a 1-minute budget
    python benchmarks/bench_classroom.py --quick --st runner.postScriptGC=false   # a Streamlit option tried
    python benchmarks/bench_classroom.py --app /tmp/other   # another checkout of the app
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models.device import cpu_isa
from core.settings import ENV_CACHE_DIR, ENV_RESNET18_WEIGHTS, ENV_RUNS_DIR

try:  # optional: a clear message instead of a traceback when it is missing (see main)
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright, expect
except ImportError:
    async_playwright = expect = None
    PlaywrightError = RuntimeError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-dev-shm-usage",
]
HOST = "127.0.0.1"
PAGES = {"Home": "Transfer Lab", "Train": "Train", "Compare": "Compare", "Search": "Search"}  # link: its h1
PRESET = "quick demo"  # a time-budget preset: core.training.config.PRESET_NAMES
PRESET_MINUTES = 2
REGIMES = 4
TARGETS = {"page_p95": 3.0, "refresh_p95": 2.0, "slowdown": 1.15}
SERVER_START_TIMEOUT = 90.0
LOAD_TIMEOUT_MS = 120_000  # one page load; a slower one counts as failed
PROBE_TIMEOUT_MS = 400_000  # the teacher's first Train: measuring the machine (ONNX exports included)
FIRST_SEARCH_TIMEOUT_MS = 400_000  # the first Search builds its indexes
WIND_DOWN_SECONDS = 300.0  # after the race, how long the students may take to finish their round

# Installed in every page before the app's own scripts: time-stamps each websocket message that carries
# ForwardMsg.script_finished (field 6, a varint: 0 a full run finished, 2 stopped for a rerun, 3 a fragment run
# finished), read from the protobuf's top-level fields without a decoder.
HOOK = r"""
(() => {
  if (window.__tl) return;
  const tl = window.__tl = {finished: []};
  const varint = (b, i) => { let v = 0, m = 1, x; do { x = b[i++]; v += (x & 127) * m; m *= 128; } while (x & 128);
                             return [v, i]; };
  const status = (b) => {
    let i = 0;
    try {
      while (i < b.length) {
        let tag, v; [tag, i] = varint(b, i);
        const f = Math.floor(tag / 8), w = tag % 8;
        if (w === 0) { [v, i] = varint(b, i); if (f === 6) return v; }
        else if (w === 2) { [v, i] = varint(b, i); i += v; }
        else if (w === 1) i += 8; else if (w === 5) i += 4; else return -1;
      }
    } catch (e) {}
    return -1;
  };
  const Original = window.WebSocket;
  class Timed extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        const t = performance.now();
        const note = (buf) => { const s = status(new Uint8Array(buf)); if (s >= 0) tl.finished.push([t, s]); };
        if (e.data instanceof ArrayBuffer) note(e.data);
        else if (e.data instanceof Blob) e.data.arrayBuffer().then(note);
      });
    }
  }
  window.WebSocket = Timed;
})();
"""

# Until the h1 containing `title` is shown in the main area and a full run has finished since `since` (an index
# into __tl.finished); polled every 20 ms in the page. Times in ms from t0 (performance.now()).
WAIT_LOADED = """
([title, since, t0, timeoutMs]) => new Promise((resolve) => {
  let marker = null;
  const check = () => {
    const now = performance.now();
    if (marker === null && [...document.querySelectorAll('[data-testid="stMain"] h1')]
          .some((h) => h.textContent.includes(title) && h.getClientRects().length)) marker = now;
    const done = window.__tl.finished.slice(since).find(([, s]) => s === 0 || s === 1);
    const errors = document.querySelectorAll('[data-testid="stException"]').length;
    if (marker !== null && done) resolve({ms: Math.max(marker, done[0]) - t0, errors});
    else if (now - t0 > timeoutMs) resolve({ms: null, errors, why: marker === null ? 'no title' : 'no finish'});
    else setTimeout(check, 20);
  };
  check();
})
"""
NAVIGATE = (
    """
async ([name, title, timeoutMs]) => {
  const link = [...document.querySelectorAll('[data-testid="stSidebarNav"] a')]
    .find((a) => a.textContent.trim().endsWith(name));
  if (!link) return {ms: null, errors: 0, why: 'no link to ' + name};
  const since = window.__tl.finished.length, t0 = performance.now();
  link.click();
  return await ("""
    + WAIT_LOADED
    + """)([title, since, t0, timeoutMs]);
}
"""
)
WATCH_START = """
() => {
  const bars = () => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stProgress"]')]
    .map((e) => e.innerText).join(' | ');
  const w = window.__tlWatch = {t0: performance.now(), texts: [], last: bars()};
  w.timer = setInterval(() => { const t = bars(); if (t !== w.last) { w.last = t; w.texts.push(performance.now()); } },
                        100);
}
"""
WATCH_STOP = """
() => {
  const w = window.__tlWatch; if (!w) return null;
  clearInterval(w.timer); window.__tlWatch = null;
  const frags = window.__tl.finished.filter(([t, s]) => s === 3 && t >= w.t0).map(([t]) => t);
  return {frags, texts: w.texts, seconds: (performance.now() - w.t0) / 1000};
}
"""


# ------------------------------------------------------------------------------------------------- helpers

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f} s] {msg}", flush=True)


def pct(values: List[float], q: float) -> Optional[float]:
    """The q-th percentile (0-100), linear between ranks; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (k - lo)


def fmt(x: Optional[float], unit: str = "s") -> str:
    return "—" if x is None else f"{x:.2f} {unit}".rstrip()


def diffs(times_ms: List[float]) -> List[float]:
    return [(b - a) / 1000 for a, b in zip(times_ms, times_ms[1:])]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def read_json(path: Path) -> Optional[dict]:
    """The JSON object in ``path``, or None when it is missing, half-written or not an object (the trainer and the
    queue write these files while we read them)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _processes() -> Dict[int, tuple]:
    """{pid: (ppid, CPU seconds of it (all its threads), of its exited and waited-for children)} from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2 :].split()
        out[int(name)] = (int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK, (int(f[13]) + int(f[14])) / CLK_TCK)
    return out


def cpu_snapshot(server_pid: int) -> tuple:
    """CPU seconds so far of the server process alone, of its child processes (the training worker, when the app
    has one), of this process and its children (Playwright, Chromium); and the monotonic clock."""
    server = cpu_seconds(server_pid)
    own = _processes().get(server_pid, (0, 0.0, 0.0))[1]
    return own, server - own, cpu_seconds(os.getpid(), exclude=server_pid), time.monotonic()


def cpu_seconds(root: int, exclude: int = -1) -> float:
    """CPU seconds used so far by ``root`` and its descendants (without ``exclude``'s subtree)."""
    procs = _processes()
    children: Dict[int, List[int]] = {}
    for pid, (ppid, *_) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid == exclude or pid not in procs:
            continue
        total += procs[pid][1] + procs[pid][2]
        todo.extend(children.get(pid, []))
    return total


# ------------------------------------------------------------------------------------------------ the store


def groups_in(runs_dir: Path) -> Dict[str, List[Path]]:
    """{launch group: its run folders}, read from each run's config.json."""
    out: Dict[str, List[Path]] = {}
    for d in runs_dir.iterdir() if runs_dir.is_dir() else []:
        config = read_json(d / "config.json") if d.is_dir() and not d.name.startswith(".") else None
        if config and config.get("group"):
            out.setdefault(config["group"], []).append(d)
    return out


def fill_store(app: Path, env: dict, runs_dir: Path, work: Path, n: int) -> str:
    """Train one tiny real run with the CLI and copy it ``n`` times into ``runs_dir`` as older runs, each its own
    launch group; returns what the seed run is."""
    seed_runs = work / "seed-run"
    cmd = [
        sys.executable,
        "-m",
        "core",
        "train",
        "--data",
        "sample",
        "--regime",
        "transfer",
        "--backbone",
        "efficientnet_lite0",
        "--epochs",
        "1",
        "--img-size",
        "64",
        "--quiet",
        "--runs-dir",
        str(seed_runs),
    ]
    done = subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the seed run failed ({' '.join(cmd)}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    (src,) = [d for d in seed_runs.iterdir() if d.is_dir()]
    config = read_json(src / "config.json")
    regime, backbone = config["model"]["regime"], config["model"]["backbone"]
    runs_dir.mkdir(parents=True, exist_ok=True)
    oldest = time.time() - 86_400 - n * 600
    for i in range(n):
        t = oldest + i * 600  # ten minutes apart, the newest a day old: every race here is newer
        run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t))}-{regime}-{backbone}-{i:04x}"
        dst = runs_dir / run_id
        dst.mkdir()
        for f in src.iterdir():
            if f.name == "best.pt":
                try:
                    os.link(f, dst / f.name)  # 13 MB each: shared, never written in place
                    continue
                except OSError:
                    pass
            shutil.copy2(f, dst / f.name)
        cfg = read_json(dst / "config.json")
        cfg["group"] = f"g-{int(t * 1e9):020d}-{i:04x}"
        (dst / "config.json").write_text(json.dumps(cfg, indent=1))
        summary = read_json(dst / "summary.json")
        if summary is not None:
            summary.update(run_id=run_id, run_dir=str(dst))
            (dst / "summary.json").write_text(json.dumps(summary, indent=1))
        status = read_json(dst / "status.json")
        if status is not None:
            stamp = datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
            status.update(started_at=stamp, updated_at=stamp)
            (dst / "status.json").write_text(json.dumps(status, indent=1))
    return f"{regime}, {backbone}, {config['data']['source']}, {config['data']['img_size']} px, 1 epoch"


@dataclass
class Race:
    group: str
    launched: float  # time.time() of the click
    runs: List[dict] = field(default_factory=list)  # per run: regime, status, start, end, wall, plan
    gave_up: Optional[float] = None  # time.time() when the benchmark stopped waiting (--race-timeout)

    @property
    def done(self) -> bool:
        return len(self.runs) >= REGIMES and all(r["end"] is not None for r in self.runs)

    @property
    def start(self) -> float:
        return min((r["start"] for r in self.runs if r["start"] is not None), default=self.launched)

    @property
    def end(self) -> float:
        """The last run's end; for a race given up on, when it was (its wall time is then a lower bound)."""
        return self.gave_up or max(r["end"] for r in self.runs)

    def wall_text(self) -> str:
        return f"> {self.wall:.0f} s (given up)" if self.gave_up else f"{self.wall:.1f} s"

    def now_running(self, runs_dir: Path) -> str:
        """The running run's progress, e.g. 'full epoch 2/3 batch 5/8'."""
        for d in groups_in(runs_dir).get(self.group, []):
            p = read_json(d / "progress.json") if not (d / "summary.json").exists() else None
            if p and p.get("phase") == "train":
                where = f"epoch {p.get('epoch')}/{p.get('epochs')} batch {p.get('batch')}/{p.get('batches')}"
                return f"{d.name.split('-')[2]} {where}"
        return ""

    @property
    def wall(self) -> float:
        return self.end - self.start

    def plan_key(self) -> tuple:
        """What each run trains (data, model and training sections of its config): equal for the same plan."""
        return tuple(sorted((r["regime"], r["recipe"]) for r in self.runs))

    def read(self, runs_dir: Path) -> None:
        """Read the group's runs back from the store (the newest state)."""
        self.runs = []
        for d in groups_in(runs_dir).get(self.group, []):
            config = read_json(d / "config.json") or {}
            summary = read_json(d / "summary.json")
            status = read_json(d / "status.json") or {}
            run = {
                "regime": (config.get("model") or {}).get("regime", "?"),
                "status": status.get("status", "?"),
                "start": None,
                "end": None,
                "wall": None,
                "test_acc": None,
                "plan": config.get("plan") or {},
                "recipe": json.dumps({k: config.get(k) for k in ("data", "model", "train")}, sort_keys=True),
            }
            if status.get("started_at"):
                try:
                    run["start"] = datetime.fromisoformat(status["started_at"]).timestamp()  # to the second
                except ValueError:
                    pass
            if summary is not None and summary.get("status", "finished") not in ("running", "queued"):
                end = (d / "summary.json").stat().st_mtime
                wall = summary.get("wall_seconds")
                start = end - wall if isinstance(wall, (int, float)) else run["start"]
                run.update(
                    status=summary.get("status", "finished"),
                    start=start if start is not None else end,
                    end=end,
                    wall=wall,
                    test_acc=summary.get("test_acc"),
                )
            self.runs.append(run)
        self.runs.sort(key=lambda r: (r["start"] is None, r["start"] or 0))


async def wait_for_new_group(runs_dir: Path, known: set, launched: float, timeout: float = 120.0) -> Race:
    while time.time() - launched < timeout:
        new = set(groups_in(runs_dir)) - known
        if new:
            return Race(group=max(new), launched=launched)
        await asyncio.sleep(0.25)
    raise RuntimeError(f"no new run appeared in {runs_dir} within {timeout:.0f} s of pressing Run all four")


# --------------------------------------------------------------------------------------------- the browser


@dataclass
class Load:
    page: str
    seconds: Optional[float]  # None: did not load within LOAD_TIMEOUT_MS
    during_race: bool
    errors: int = 0
    why: str = ""


@dataclass
class Watch:
    who: str
    seconds: float
    fragments: List[float]  # intervals between fragment runs finished, s
    texts: List[float]  # intervals between progress-text changes, s


@dataclass
class Phase:
    """What one phase's browsers saw; ``race_on`` says whether the measured race is running now."""

    loads: List[Load] = field(default_factory=list)
    watches: List[Watch] = field(default_factory=list)
    race_on: bool = False
    race_over: asyncio.Event = field(default_factory=asyncio.Event)


async def open_app(page, base_url: str, timeout_ms: float = LOAD_TIMEOUT_MS) -> dict:
    """A cold session: the app's URL until Home is shown and its first run has finished (from navigation start)."""
    await page.goto(base_url, wait_until="commit", timeout=timeout_ms)
    return await page.evaluate(WAIT_LOADED, [PAGES["Home"], 0, 0, timeout_ms])


async def navigate(page, name: str, timeout_ms: float = LOAD_TIMEOUT_MS) -> dict:
    return await page.evaluate(NAVIGATE, [name, PAGES[name], timeout_ms])


async def watch(page, who: str, phase: Phase, seconds: Optional[float]) -> None:
    """The live panel on Train for ``seconds`` (or until the race ends); kept when the race ran all along."""
    await page.evaluate(WATCH_START)
    if seconds is None:
        await phase.race_over.wait()
    else:
        try:
            await asyncio.wait_for(phase.race_over.wait(), seconds)
        except asyncio.TimeoutError:
            pass
    got = await page.evaluate(WATCH_STOP)
    if got:
        phase.watches.append(Watch(who, got["seconds"], diffs(got["frags"]), diffs(got["texts"])))


async def student(i: int, browser, base_url: str, phase: Phase, args, opened: list) -> None:
    """One student: opens the app, then rounds of Train (watching the race), Compare, Search, Home."""
    await asyncio.sleep(i * args.ramp / max(1, args.sessions))
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(HOOK)
    page = await context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    try:
        got = await open_app(page, base_url)
        phase.loads.append(Load("first open", _s(got), phase.race_on, got.get("errors", 0), got.get("why", "")))
        opened.append(i)
        rounds = 0
        while True:
            for name in ("Train", "Compare", "Search", "Home"):
                got = await navigate(page, name)
                phase.loads.append(Load(name, _s(got), phase.race_on, got.get("errors", 0), got.get("why", "")))
                if name == "Train" and phase.race_on and got.get("ms") is not None:
                    await watch(page, f"student {i}", phase, args.watch)
                await asyncio.sleep(args.think)
            rounds += 1
            if phase.race_over.is_set() and rounds >= args.rounds:
                return
    except Exception as e:  # noqa: BLE001 - one broken session is reported, the others go on
        say(f"student {i} stopped: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        phase.loads.append(Load("session", None, phase.race_on, 0, type(e).__name__))
    finally:
        if i not in opened:
            opened.append(i)  # counted as having opened, so that the teacher does not wait for it
        await context.close()


def _s(got: dict) -> Optional[float]:
    return None if got.get("ms") is None else got["ms"] / 1000


async def teacher_prepares(page, base_url: str, budget: int) -> None:
    """The teacher's session: Train with the preset and budget chosen, the plan shown, the button enabled."""
    got = await open_app(page, base_url)
    if got["ms"] is None:
        raise RuntimeError(f"the app did not open: {got}")
    got = await navigate(page, "Train", PROBE_TIMEOUT_MS)
    if got["ms"] is None:
        raise RuntimeError(f"the Train page did not load: {got}")
    main = page.locator('[data-testid="stMain"]')
    await main.locator('[data-testid="stRadio"] label', has_text=PRESET).first.click()
    planned = re.compile(rf"predicted \d.* of the {PRESET_MINUTES} min 00 s budget")
    await page.get_by_text(planned).first.wait_for(timeout=PROBE_TIMEOUT_MS)  # the first time: measures the machine
    if budget != PRESET_MINUTES:
        slider = page.get_by_role("slider", name="Time budget (minutes)")
        await slider.focus()
        await slider.press("Home")
        for _ in range(budget - 1):
            await slider.press("ArrowRight")
        planned = re.compile(rf"predicted \d.* of the {budget} min 00 s budget")
        await page.get_by_text(planned).first.wait_for(timeout=LOAD_TIMEOUT_MS)
    run_all = page.get_by_role("button", name="Run all four")
    await expect(run_all).to_have_count(1, timeout=LOAD_TIMEOUT_MS)  # no stale button from an earlier rerun
    await expect(run_all).to_be_enabled(timeout=PROBE_TIMEOUT_MS)


async def teacher_launches(page, runs_dir: Path, phase: Phase) -> Race:
    known = set(groups_in(runs_dir))
    launched = time.time()
    await page.get_by_role("button", name="Run all four").click()
    race = await wait_for_new_group(runs_dir, known, launched)
    phase.race_on = True
    return race


def low_priority_chromium(work: Path) -> Path:
    """A launcher running Chromium at nice 19. Chromium renices its own processes (the browser process to -8 when
    it may), so it also loses the right to raise its priority (CAP_SYS_NICE) when ``setpriv`` is there."""
    drop = "setpriv --bounding-set -sys_nice " if shutil.which("setpriv") else ""
    path = work / "chromium-nice19"
    path.write_text(f'#!/bin/sh\nexec {drop}nice -n 19 {CHROMIUM} "$@"\n')
    path.chmod(0o755)
    return path


def new_browser_args(args) -> dict:
    return {"executable_path": str(args.chromium), "args": CHROMIUM_ARGS, "headless": True}


def start_profile(args, server_pid: int):
    """``py-spy record`` of the server (all its threads) until :func:`stop_profile`; None without ``--profile``."""
    if not args.profile:
        return None
    spy = args.profile if Path(args.profile).is_file() else shutil.which(args.profile)
    if spy is None:
        say("⚠️ --profile: py-spy not found (pip install py-spy, or --profile PATH/TO/py-spy)")
        return None
    out = args.work / "server-profile.txt"
    cmd = [spy, "record", "--pid", str(server_pid), "--rate", "50", "--format", "raw", "--nonblocking", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, out


def stop_profile(profiler) -> Optional[List[tuple]]:
    """The profile's functions by share of the server's samples, including what they call: [(share, name)]."""
    if profiler is None:
        return None
    proc, out = profiler
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on ^C
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    inclusive: Dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines() if out.is_file() else []:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        for frame in {f.split(" (")[0] for f in stack.split(";")}:
            inclusive[frame] = inclusive.get(frame, 0) + int(n)
    rows = [(n / total, f) for f, n in inclusive.items() if not GENERIC_FRAMES.fullmatch(f)] if total else []
    return sorted(rows, reverse=True)[:25]


# Frames every sample of a thread passes through (threads, event loop, CLI, Streamlit's script wrappers, torch's
# module call): left out of the profile's table so that what the time went to shows.
GENERIC_FRAMES = re.compile(
    r"(Thread\.|BaseEventLoop\.|Command\.|CachedFunc\.|ScriptRunner\._run_script|WorkerThread\.).*|"
    r"Runner\.run|Handle\._run|run|main_run|_main_run|_run_server_loop|_run_code|_run_module_as_main|Group\.invoke|"
    r"Context\.invoke|<module>|exec_func_with_error_handling|.*code_to_exec|Page\.run|_worker|_WorkItem\.run|"
    r"Module\._(wrapped_)?call_impl|context_decorator|.*decorate_context|.*wrapped_func"
)
NOTES = {
    "ScriptRunner._on_script_finished": "Streamlit's gc.collect(2) after every script and fragment run "
    "(runner.postScriptGC), holding the GIL",
}


async def run_phase(pw, name: str, base_url: str, runs_dir: Path, args, server_pid: int, students: int) -> dict:
    """One race launched by the teacher, with ``students`` sessions browsing meanwhile; what was seen."""
    phase = Phase()
    browser = await pw.chromium.launch(**new_browser_args(args))
    # the teacher's screen (the projector, its own machine in class) at normal priority; the students' at nice 19
    teacher_browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    tasks: List[asyncio.Task] = []
    cpu0 = cpu_snapshot(server_pid)
    try:
        context = await teacher_browser.new_context(viewport={"width": 1440, "height": 1000})
        await context.add_init_script(HOOK)
        teacher = await context.new_page()
        teacher.set_default_timeout(LOAD_TIMEOUT_MS)
        try:  # the teacher has Train ready before the class comes in
            await teacher_prepares(teacher, base_url, args.budget)
        except PlaywrightError as e:
            raise RuntimeError(f"{name}: the teacher's Train page did not get ready: {str(e).splitlines()[0]}") from e
        opened: List[int] = []
        if students:
            say(f"{name}: {students} students open the app (ramp {args.ramp:.0f} s)")
            tasks = [asyncio.create_task(student(i, browser, base_url, phase, args, opened)) for i in range(students)]
        deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000 + args.ramp
        while len(opened) < students:  # the race starts once every student has the app open...
            if time.monotonic() > deadline:  # ...or once the others have waited a page load's timeout for them
                if len(opened) < students / 2:
                    raise RuntimeError(f"only {len(opened)} of {students} students opened the app in time")
                say(f"{name}: only {len(opened)} of {students} students opened the app within "
                    f"{LOAD_TIMEOUT_MS / 1000:.0f} s; the race starts, the others keep trying")  # fmt: skip
                break
            await asyncio.sleep(0.2)
        if students and len(opened) == students:
            say(f"{name}: all {students} students have the app open")
        try:
            race = await teacher_launches(teacher, runs_dir, phase)
        except PlaywrightError as e:
            raise RuntimeError(f"{name}: pressing Run all four failed: {str(e).splitlines()[0]}") from e
        say(f"{name}: race {race.group} launched; the teacher's screen stays on Train")
        teacher_watch = asyncio.create_task(watch(teacher, "teacher", phase, None))
        profiler = start_profile(args, server_pid) if students else None
        last, said = "", time.monotonic()
        while True:  # progress lines while the race runs
            race.read(runs_dir)
            if race.done:
                break
            line = ", ".join(f"{r['regime']} {'done' if r['end'] else r['status']}" for r in race.runs)
            if line != last or time.monotonic() - said > 30:
                say(f"{name}: {line} ({race.now_running(runs_dir) or '…'}); {len(phase.loads)} page loads so far")
                last, said = line, time.monotonic()
            if time.time() - race.launched > args.race_timeout:
                race.gave_up = time.time()
                say(f"{name}: ⚠️ the race has not ended {args.race_timeout:.0f} s after its launch: giving up on it")
                break
            await asyncio.sleep(1.0)
        phase.race_on = False
        phase.race_over.set()
        await teacher_watch
        cpu1 = cpu_snapshot(server_pid)
        profile = stop_profile(profiler)
        say(f"{name}: race over, {race.wall_text()} from the start of its first run to the end of its last")
        if tasks:
            say(f"{name}: the students finish their rounds (at most {WIND_DOWN_SECONDS:.0f} s)")
            _, pending = await asyncio.wait(tasks, timeout=WIND_DOWN_SECONDS)
            if pending:
                say(f"{name}: {len(pending)} students were still loading a page: stopped")
        cpu = tuple(b - a for a, b in zip(cpu0, cpu1))
        return {"race": race, "phase": phase, "cpu": cpu, "profile": profile}
    finally:
        for t in tasks:
            t.cancel()
        await browser.close()
        await teacher_browser.close()


async def warm_up(pw, base_url: str, runs_dir: Path, args) -> dict:
    """The unmeasured first race, then a first visit to Compare and to Search (which builds its indexes)."""
    result = await run_phase(pw, "warm-up", base_url, runs_dir, args, args.server_pid, 0)
    browser = await pw.chromium.launch(**new_browser_args(args))
    try:
        context = await browser.new_context(viewport={"width": 1440, "height": 1000})
        await context.add_init_script(HOOK)
        page = await context.new_page()
        await open_app(page, base_url)
        for name in ("Compare", "Search", "Train", "Home"):
            got = await navigate(page, name, FIRST_SEARCH_TIMEOUT_MS)
            say(f"warm-up: first {name}: {fmt(_s(got))}{' ' + got.get('why', '') if got.get('why') else ''}")
    finally:
        await browser.close()
    return result


# ----------------------------------------------------------------------------------------------- the report


def report(args, meta: dict, baseline: dict, loaded: dict) -> None:
    ok = {True: "**pass**", False: "**FAIL**", None: "—"}
    loads = loaded["phase"].loads
    print(f"\nISA {cpu_isa()} (lscpu: {meta['lscpu_isa'] or '?'}), {os.cpu_count()} cores; app {meta['app']}")
    print(f"Command: {meta['command']}")
    print(
        f"Store: {meta['stored']} runs at the end: {args.runs} copies of one tiny real run ({meta['seed']}) under "
        f"new run ids and groups, plus the runs of the {'' if args.skip_warmup else 'warm-up, '}baseline and "
        f"loaded races."
    )
    print(
        f"Race: the Train page's '{PRESET}' preset, budget {args.budget} min, built-in sample, efficientnet_lite0, "
        f"precision auto; launched by a click in the teacher's session (the app's queue). "
        + (
            f"No warm-up race (--skip-warmup): caches as found in {meta['cache']}."
            if args.skip_warmup
            else "Caches warm: one unmeasured warm-up race first (and a first Compare and Search)."
        )
        + (f" Streamlit options: {', '.join(args.st)}." if args.st else "")
    )
    print(
        f"Sessions: {args.sessions} students + the teacher, one headless Chromium (a context each), think time "
        f"{args.think:g} s between pages, {args.watch:g} s watching Train while the race runs, ≥ {args.rounds} "
        f"round(s) of Home → Train → Compare → Search; ramp {args.ramp:g} s."
    )
    server_cores, browser_cores = args.cores
    if server_cores:
        print(
            f"Cores: the server and its training worker on {len(server_cores)} ({sorted(server_cores)}), the browsers "
            f"and Playwright on the other {len(browser_cores)} ({sorted(browser_cores)}), by CPU affinity: in a "
            f"classroom the browsers run on the students' machines. In-page times include Chromium's own rendering "
            f"of {args.sessions + 1} sessions on those cores, so they are an upper bound of what a student sees.\n"
        )
    else:
        print(
            "Caveat: the students' browsers run at nice 19 on the server's own cores (--server-cores 0); in "
            "a classroom they run on the students' machines. In-page times include Chromium's own rendering, which "
            "waits for CPU the server and the training leave over, so they are an upper bound of what a student "
            "would see.\n"
        )

    print("| what | n | p50 | p95 | max | target | verdict |\n|---|---:|---:|---:|---:|---|---|")
    for name in ("Home", "Train", "Compare", "Search"):
        during = [x.seconds for x in loads if x.page == name and x.during_race and x.seconds is not None]
        failed = sum(1 for x in loads if x.page == name and x.seconds is None)
        p95 = pct(during, 95)
        verdict = ok[None if p95 is None else (p95 <= TARGETS["page_p95"] and not failed)]
        print(
            f"| page load: {name} (sidebar link, during the race) | {len(during)}"
            f"{f' (+{failed} failed)' if failed else ''} | {fmt(pct(during, 50))} | {fmt(p95)} | "
            f"{fmt(max(during) if during else None)} | p95 ≤ {TARGETS['page_p95']:g} s | {verdict} |"
        )
    for name in ("Home", "Train", "Compare", "Search"):
        all_ = [x.seconds for x in loads if x.page == name and x.seconds is not None]
        print(
            f"| page load: {name}, all loads (race on or not) | {len(all_)} | {fmt(pct(all_, 50))} | "
            f"{fmt(pct(all_, 95))} | {fmt(max(all_) if all_ else None)} | | |"
        )
    first = [x.seconds for x in loads if x.page == "first open" and x.seconds is not None]
    print(
        f"| first open of the app (a cold session: assets, websocket, sidebar, Home) | {len(first)} | "
        f"{fmt(pct(first, 50))} | {fmt(pct(first, 95))} | {fmt(max(first) if first else None)} | | |"
    )
    for label, result in (("loaded", loaded), ("baseline", baseline)):
        watches = result["phase"].watches
        for who, pick in (
            ("students' Train", lambda w: w.who != "teacher"),
            ("teacher's screen", lambda w: w.who == "teacher"),
        ):
            frag = [d for w in watches if pick(w) for d in w.fragments]
            text = [d for w in watches if pick(w) for d in w.texts]
            if not frag and not text:
                continue
            secs = sum(w.seconds for w in watches if pick(w))
            p95 = pct(frag, 95)
            judged = label == "loaded"
            print(
                f"| live panel refresh, {label}, {who} ({secs:.0f} s watched) | {len(frag)} | {fmt(pct(frag, 50))} "
                f"| {fmt(p95)} | {fmt(max(frag) if frag else None)} | {'p95 ≤ 2 s' if judged else ''} | "
                f"{ok[None if p95 is None or not judged else p95 <= TARGETS['refresh_p95']]} |"
            )
            print(
                f"| progress text changes, {label}, {who} | {len(text)} | {fmt(pct(text, 50))} | "
                f"{fmt(pct(text, 95))} | {fmt(max(text) if text else None)} | | |"
            )
    b, lo = baseline["race"], loaded["race"]
    server_side(args, baseline, loaded)
    print("\n| race | n | wall | | | target | verdict |\n|---|---:|---:|---:|---:|---|---|")
    ratio = lo.wall / b.wall
    print(f"| race wall, baseline (the teacher's screen only) | 1 | {b.wall:.1f} s | | | | |")
    print(f"| race wall, {args.sessions} students watching and browsing | 1 | {lo.wall:.1f} s | | | | |")
    print(
        f"| loaded / baseline | | **{ratio:.3f}** | | | ≤ {TARGETS['slowdown']:.2f} | "
        f"{ok[ratio <= TARGETS['slowdown']]} |"
    )

    print("\n| race | regime | planned s | run s (wall_seconds) | status | test acc |\n|---|---|---:|---:|---|---:|")
    for label, race in (("baseline", b), ("loaded", lo)):
        for r in race.runs:
            acc = f"{r['test_acc']:.3f}" if isinstance(r["test_acc"], (int, float)) else "—"
            planned = r["plan"].get("predicted_seconds")
            print(
                f"| {label} | {r['regime']} | {planned if planned is not None else '—'} | "
                f"{fmt(r['wall'], '')} | {r['status']} | {acc} |"
            )
    sums = {k: sum(r["wall"] or 0 for r in race.runs) for k, race in (("b", b), ("l", lo))}
    print(
        f"\nSum of the runs' wall_seconds: baseline {sums['b']:.1f} s, loaded {sums['l']:.1f} s "
        f"({sums['l'] / sums['b']:.3f}×); from the click to the last run's end: baseline "
        f"{b.end - b.launched:.1f} s, loaded {lo.end - lo.launched:.1f} s."
    )
    if b.plan_key() != lo.plan_key():
        print(
            "⚠️ The two races were planned differently (see planned s): their wall times are not directly "
            "comparable; compare each run's time against its plan."
        )
    print("\n| phase | wall s | CPU s (cores): server process | its child processes (training worker) | browsers + "
          "Playwright |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for label, result in (("baseline race", baseline), ("loaded race", loaded)):
        *cpu, wall = result["cpu"]
        print(f"| {label} | {wall:.0f} | " + " | ".join(f"{c:.0f} ({c / wall:.2f})" for c in cpu) + " |")
    if loaded.get("profile"):
        print("\nWhere the server's threads spent the loaded race (py-spy, share of samples, callees included):\n")
        print("| share | function |\n|---:|---|")
        for share, name in loaded["profile"]:
            print(f"| {share:.1%} | `{name}`{' — ' + NOTES[name] if name in NOTES else ''} |")
    errors = [x for x in loads if x.errors or x.why]
    if errors:
        print(
            f"\n⚠️ {len(errors)} page load(s) with an error shown or not finished, e.g. "
            + "; ".join(f"{x.page}: {x.why or f'{x.errors} exception(s) shown'}" for x in errors[:5])
        )


def server_side(args, baseline: dict, loaded: dict) -> None:
    """The targets judged on the server's own times (from the timed launcher) during the loaded race, plus what
    one browser adds on a machine of its own; the in-page times above also wait for the browsers' shared cores."""
    race = loaded["race"]
    got = server_times(args.timing_log, race.start, race.end)
    alone = loaded.get("alone") or {}
    teacher = [d for w in baseline["phase"].watches if w.who == "teacher" for d in w.fragments]
    period = pct(teacher, 50)
    ok = {True: "**pass**", False: "**FAIL**", None: "—"}
    print(
        "\nThe server's side, during the loaded race: from a request's arrival in the server to its run's end "
        "(the timed launcher's log). A student's browser adds its own rendering on its own machine: the p50 "
        "of 5 loads of each page by one browser with the server idle (its time included). The estimate is "
        "their sum; for the live panel, the refresh period seen at baseline plus the server's p95.\n"
    )
    print("| what | n | p50 | p95 | max | + one browser alone | estimate | target | verdict |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")

    def row(what: str, xs: List[float], added: Optional[float], added_text: str, target: Optional[float]) -> None:
        p95 = pct(xs, 95)
        est = None if p95 is None or added is None else p95 + added
        print(
            f"| {what} | {len(xs)} | {fmt(pct(xs, 50))} | {fmt(p95)} | {fmt(max(xs) if xs else None)} | "
            f"{added_text} | {fmt(est) if target else ''} | {f'p95 ≤ {target:g} s' if target else ''} | "
            f"{ok[None if est is None else est <= target] if target else ''} |"
        )

    for name in ("Home", "Train", "Compare", "Search"):
        own = pct(alone.get(name, []), 50)
        row(f"page load, server side: {name}", got.pages.get(name, []), own, fmt(own), TARGETS["page_p95"])
    row("first open, server side", got.first, None, "", None)
    row("live panel and chart reruns, server side", got.fragments, period, f"period {fmt(period)}",
        TARGETS["refresh_p95"])  # fmt: skip


# --------------------------------------------------------------------------------------------------- main


def split_cores(server_cores: int) -> tuple:
    """(the server's cores, the browsers' cores) for ``--server-cores``; (None, None) to share every core."""
    cores = sorted(os.sched_getaffinity(0))
    if server_cores <= 0 or len(cores) < 2:
        return None, None
    n = min(server_cores, len(cores) - 1)
    return set(cores[:n]), set(cores[n:])


# ``streamlit run`` with two hooks that write, for every browser session, when a rerun request arrived in the
# server and when a run finished (ForwardMsg.script_finished), wall-clock time: the server's side of every page
# load and live refresh, free of the browsers' own waiting for CPU. Streamlit internals (AppSession), so it
# checks they are there.
TIMED_LAUNCHER = """
import json, sys, time
from streamlit.runtime.app_session import AppSession
for name in ("handle_backmsg", "_enqueue_forward_msg"):
    assert hasattr(AppSession, name), "this Streamlit has no AppSession." + name + ": update bench_classroom's hooks"
log = open(sys.argv.pop(1), "a", buffering=1)
handle, enqueue = AppSession.handle_backmsg, AppSession._enqueue_forward_msg

def handle_backmsg(self, msg):
    if msg.WhichOneof("type") == "rerun_script":
        r = msg.rerun_script
        log.write(json.dumps(["rerun", self.id, time.time(), r.page_script_hash, r.fragment_id]) + "\\n")
    return handle(self, msg)

def enqueue_forward_msg(self, msg):
    if msg.WhichOneof("type") == "script_finished":
        log.write(json.dumps(["finished", self.id, time.time(), msg.script_finished]) + "\\n")
    return enqueue(self, msg)

AppSession.handle_backmsg, AppSession._enqueue_forward_msg = handle_backmsg, enqueue_forward_msg
from streamlit.web.cli import main
sys.argv[0] = "streamlit"
main()
"""


def start_server(
    app: Path,
    env: dict,
    log_path: Path,
    options: List[str],
    cores: Optional[set] = None,
    timing_log: Optional[Path] = None,
) -> tuple:
    """``streamlit run`` of ``app`` on a free port, on ``cores``; with ``timing_log``, through the timed launcher."""
    port = free_port()
    launcher = ["-c", TIMED_LAUNCHER, str(timing_log)] if timing_log else ["-m", "streamlit"]
    cmd = [
        sys.executable,
        *launcher,
        "run",
        "streamlit_app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        HOST,
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    for option in options:  # --st name=value -> --name value
        name, _, value = option.partition("=")
        cmd += [f"--{name.removeprefix('--')}", value]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=app,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,  # its worker inherits them
        )
    health = f"http://{HOST}:{port}/_stcore/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log_path}")
        try:
            with opener.open(health, timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, f"http://{HOST}:{port}"
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"streamlit did not answer {health} within {SERVER_START_TIMEOUT:.0f} s")
        time.sleep(0.5)


def descendants(root: int) -> List[int]:
    procs = _processes()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, (ppid, *_) in procs.items() if ppid == pid]
        out += kids
        todo += kids
    return out


def stop_server(proc) -> None:
    """Stop the server, then whatever it started that is still there (a training worker with queued runs)."""
    if proc is None or proc.poll() is not None:
        return
    children = descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in children:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        time.sleep(5)
        children = alive


@dataclass
class ServerTimes:
    """From the timed launcher's log: seconds from a rerun request's arrival in the server to its run's end."""

    pages: Dict[str, List[float]] = field(default_factory=dict)  # a page's full run (navigation), by page
    first: List[float] = field(default_factory=list)  # the first run of a session (opening the app)
    fragments: List[float] = field(default_factory=list)  # fragment reruns (the live panel and chart)


def server_times(log: Path, t0: float, t1: float) -> ServerTimes:
    """The requests that arrived between ``t0`` and ``t1`` (time.time()). A fragment run's end answers the
    session's waiting fragment requests; a full run's end answers every waiting request (it reruns the
    fragments too); a run stopped early for a newer request (status 2) answers none."""
    from streamlit.util import calc_hash  # how st.Page names a page: the hash of its URL path

    names = {calc_hash(url): name for name, url in (("Home", ""), ("Home", "home"), ("Train", "train"),
                                                   ("Compare", "compare"), ("Search", "search"))}  # fmt: skip
    out, pending, seen = ServerTimes(), {}, set()
    for line in log.read_text().splitlines() if log.is_file() else []:
        kind, session, t, *rest = json.loads(line)
        if kind == "rerun":
            first = session not in seen
            seen.add(session)
            pending.setdefault(session, []).append((t, rest[0], rest[1], first))
            continue
        status = rest[0]
        if status == 2:
            continue
        waiting = pending.get(session, [])
        answered = [w for w in waiting if w[2]] if status == 3 else waiting
        pending[session] = [w for w in waiting if w not in answered]
        for tr, page, fragment, first in answered:
            if not t0 <= tr <= t1:
                continue
            if fragment:
                out.fragments.append(t - tr)
            elif first:
                out.first.append(t - tr)
            else:
                out.pages.setdefault(names.get(page, "Home" if not page else page), []).append(t - tr)
    return out


async def render_alone(pw, base_url: str, args, repeats: int = 5) -> Dict[str, List[float]]:
    """Each page's load in one browser with the server idle: what a student's own machine adds to the server's
    time (the server's idle time included, so an overestimate)."""
    browser = await pw.chromium.launch(**new_browser_args(args))
    out: Dict[str, List[float]] = {}
    try:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script(HOOK)
        page = await context.new_page()
        await open_app(page, base_url)
        for _ in range(repeats):
            for name in ("Train", "Compare", "Search", "Home"):
                got = await navigate(page, name)
                if got.get("ms") is not None:
                    out.setdefault(name, []).append(got["ms"] / 1000)
    finally:
        await browser.close()
    return out


async def measure(args, base_url: str, runs_dir: Path) -> tuple:
    async with async_playwright() as pw:
        if not args.skip_warmup:
            say("warm-up race (not measured): the teacher measures the machine once if needed, then races")
            await warm_up(pw, base_url, runs_dir, args)
        say("baseline race: only the teacher's screen is open")
        baseline = await run_phase(pw, "baseline", base_url, runs_dir, args, args.server_pid, 0)
        say(f"loaded race: {args.sessions} students and the teacher")
        loaded = await run_phase(pw, "loaded", base_url, runs_dir, args, args.server_pid, args.sessions)
        say("one browser alone, the server idle: each page's load 5 times")
        loaded["alone"] = await render_alone(pw, base_url, args)
        return baseline, loaded


def lscpu_isa() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return ""
    return ",".join(sorted(set(re.findall(r"\b(avx512_bf16|avx2|amx_bf16)\b", out))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=30, help="students' browser sessions (default 30)")
    ap.add_argument("--runs", type=int, default=100, help="copies of one tiny run in the store (default 100)")
    ap.add_argument("--rounds", type=int, default=1, help="at least this many rounds of the four pages per student")
    ap.add_argument("--budget", type=int, default=PRESET_MINUTES, help="the race's budget in minutes (default 2)")
    ap.add_argument("--think", type=float, default=2.0, help="seconds between two page loads (default 2)")
    ap.add_argument("--watch", type=float, default=30.0, help="seconds on Train watching the race (default 30)")
    ap.add_argument("--ramp", type=float, default=10.0, help="the students open the app over this many seconds")
    ap.add_argument("--cache-dir", type=Path, help="reuse this TRANSFERLAB_CACHE_DIR (default: a fresh one)")
    ap.add_argument("--app", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    ap.add_argument("--race-timeout", type=float, default=900.0, help="give up on a race after this many seconds")
    ap.add_argument("--skip-warmup", action="store_true", help="no warm-up race (only with a warm --cache-dir)")
    ap.add_argument("--profile", nargs="?", const="py-spy", default=None, metavar="PY_SPY",
                    help="profile the server during the loaded race with py-spy (on PATH, or its path)")  # fmt: skip
    ap.add_argument("--st", action="append", default=[], metavar="OPTION=VALUE",
                    help="a Streamlit option for the server, e.g. runner.postScriptGC=false (repeatable)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, cache, server log)")
    ap.add_argument("--quick", action="store_true", help="a try-out: 5 sessions, 10 runs, a 1-minute budget")
    ap.add_argument("--server-cores", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                    help="cores for the server and its worker, the others for the browsers (0: share all)")  # fmt: skip
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.runs, args.budget = 5, 10, 1
    if async_playwright is None:
        sys.exit("Playwright for Python is missing: pip install playwright (no 'playwright install' needed).")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    app = args.app.resolve()
    load = os.getloadavg()[0]
    if load > 1.5:
        say(f"⚠️ load average {load:.2f}: something else is running, the figures will be off")

    work = Path(tempfile.mkdtemp(prefix="bench-classroom-"))
    cache = args.cache_dir.resolve() if args.cache_dir else work / "cache"
    runs_dir = work / "runs"
    env = {
        **os.environ,
        ENV_CACHE_DIR: str(cache),
        ENV_RUNS_DIR: str(runs_dir),
        "PYTHONUNBUFFERED": "1",
        "TORCH_HOME": str(work / "torch_home"),
    }  # an empty hub: the offline defaults, no download
    env.pop(ENV_RESNET18_WEIGHTS, None)
    proc = None
    try:
        say(f"the store: one tiny real run with the CLI, copied {args.runs} times (folder {work})")
        seed = fill_store(app, env, runs_dir, work, args.runs)
        say(f"the server: streamlit run {app / 'streamlit_app.py'}")
        server_cores, browser_cores = split_cores(args.server_cores)
        args.timing_log = work / "server-times.jsonl"
        proc, base_url = start_server(app, env, work / "streamlit.log", args.st, server_cores, args.timing_log)
        args.server_pid, args.work = proc.pid, work
        args.cores = (server_cores, browser_cores)
        args.chromium = low_priority_chromium(work)
        if browser_cores:  # this thread, then Playwright's driver and Chromium (its children): the browsers' cores
            os.sched_setaffinity(0, browser_cores)
            say(f"cores: server and worker {sorted(server_cores)}, browsers and Playwright {sorted(browser_cores)}")
        baseline, loaded = asyncio.run(measure(args, base_url, runs_dir))
        stored = len([d for d in runs_dir.iterdir() if d.is_dir()])
        meta = {
            "cache": cache,
            "app": app,
            "seed": seed,
            "stored": stored,
            "lscpu_isa": lscpu_isa(),
            "command": "python " + shlex.join([os.path.relpath(__file__, Path.cwd()), *sys.argv[1:]]),
        }
        report(args, meta, baseline, loaded)
    except (RuntimeError, PlaywrightError) as e:
        args.keep = True  # for the server log
        sys.exit(f"failed: {e}\n(server log: {work / 'streamlit.log'})")
    finally:
        stop_server(proc)
        if args.keep:
            print(f"\nKept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
