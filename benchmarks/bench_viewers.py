"""What one open browser costs: CPU of the server and of the browser per second, for a viewer left on each page.

``--viewers`` headless Chromium sessions (default 5) open the app and sit on one page for ``--seconds``; the CPU
time of the server process (its training worker left out) and of Chromium over that window, divided by the
viewers and the window, is the cost of one viewer in ms of CPU per second. Pages: Home, Train with nothing
training, Train while a run trains (its live panel), Compare and Search.

The app's own settings (``.streamlit/config.toml``) are compared with a baseline server started the same way
with ``--baseline-st OPTION=VALUE`` options (default: ``server.fileWatcherType=auto``, Streamlit's default file
watcher), or with another checkout (``--baseline-app``, e.g. an earlier commit), the two alternated ``--repeats``
times in one run; medians, and the ratio baseline / app.

The store holds ``--runs`` copies of one tiny real run (as in ``bench_classroom.py``). For the live Train page a
long scratch run (built-in sample, 160 px, 300 epochs) is queued after the other pages; a worker process
trains it, on the server's cores (``--server-cores``, as in ``bench_classroom.py``: the browsers get the others).

    python benchmarks/bench_viewers.py                     # 5 viewers, 20 s per page, 3 repeats: ~10 minutes
    python benchmarks/bench_viewers.py --pages "Train live" --repeats 5
    python benchmarks/bench_viewers.py --baseline-st runner.postScriptGC=true
    git worktree add /tmp/before HEAD~1 && python benchmarks/bench_viewers.py --baseline-app /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_classroom import (  # noqa: E402 - the same server, browser and store as the classroom benchmark
    CHROMIUM,
    CHROMIUM_ARGS,
    HOOK,
    PlaywrightError,
    async_playwright,
    cpu_seconds,
    fill_store,
    lscpu_isa,
    navigate,
    open_app,
    say,
    split_cores,
    start_server,
    stop_server,
)

from core.models.device import cpu_isa  # noqa: E402
from core.runs.store import RunStore  # noqa: E402
from core.settings import ENV_CACHE_DIR, ENV_RESNET18_WEIGHTS, ENV_RUNS_DIR  # noqa: E402
from core.training.config import RunConfig, new_group_id  # noqa: E402

STATES = ("Home", "Train", "Train live", "Compare", "Search")
LIVE_EPOCHS = 300
WORKER = "from core.settings import Settings; from core.training.worker import main; main(Settings.from_env())"


def own_cpu(pid: int) -> float:
    """CPU seconds of the process ``pid`` alone (all its threads), not of its children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LiveRun:
    """A long scratch run (built-in sample, 160 px), queued in a launch of its own and trained by the app's worker
    process, started here on the server's cores; stopped with SIGTERM (the run is kept as interrupted)."""

    def __init__(self, runs_dir: Path, env: dict, cores, app: Path):
        cfg = RunConfig()
        cfg.data.source, cfg.data.img_size = "sample", 160  # epochs of several seconds: charts of a like size
        cfg.model.regime, cfg.model.backbone = "scratch", "efficientnet_lite0"
        cfg.train.epochs, cfg.group = LIVE_EPOCHS, new_group_id()
        self.store = RunStore(runs_dir)
        self.run_id = self.store.enqueue(cfg.validate().to_dict())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            cwd=app,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
        )

    async def training(self, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while not (self.store.dir / self.run_id / "metrics.jsonl").exists():  # its first epoch is in
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the live run {self.run_id} did not train (worker exit {self.proc.poll()})")
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def cost_of(pw, base_url: str, state: str, args, server_pid: int, worker_pid: int = -1) -> Dict[str, float]:
    """{"server": ms/s, "browser": ms/s} per viewer, ``args.viewers`` browsers left on ``state``'s page."""
    page_name = "Train" if state == "Train live" else state
    browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    me = os.getpid()

    def browsers() -> float:  # this process's subtree: Playwright and Chromium (neither server nor worker)
        return cpu_seconds(me, exclude=server_pid) - (cpu_seconds(worker_pid) if worker_pid > 0 else 0.0)

    try:
        for _ in range(args.viewers):
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_init_script(HOOK)
            page = await context.new_page()
            got = await open_app(page, base_url)
            if got.get("ms") is not None and page_name != "Home":
                got = await navigate(page, page_name)
            if got.get("ms") is None:
                raise RuntimeError(f"{page_name} did not load: {got.get('why')}")
        await asyncio.sleep(args.settle)  # the loads' own work done
        s0, b0, t0 = own_cpu(server_pid), browsers(), time.monotonic()
        await asyncio.sleep(args.seconds)
        s1, b1, t1 = own_cpu(server_pid), browsers(), time.monotonic()
        per = 1000 / (t1 - t0) / args.viewers
        return {"server": (s1 - s0) * per, "browser": (b1 - b0) * per}
    finally:
        await browser.close()


async def one_server(label: str, app: Path, options: List[str], args) -> Dict[str, dict]:
    """Every page's cost per viewer on a server of ``app`` started with ``options``."""
    proc, base_url = start_server(app, args.env, args.work / f"streamlit-{label}.log", options, args.cores[0])
    try:
        out = {}
        async with async_playwright() as pw:
            for state in [s for s in args.pages if s != "Train live"]:  # nothing training
                out[state] = await cost_of(pw, base_url, state, args, proc.pid)
            if "Train live" in args.pages:
                live = LiveRun(args.runs_dir, args.env, args.cores[0], app)
                try:
                    await live.training()
                    out["Train live"] = await cost_of(pw, base_url, "Train live", args, proc.pid, live.proc.pid)
                finally:
                    live.stop()
        return out
    finally:
        stop_server(proc)


async def measure(args) -> Dict[str, Dict[str, List[dict]]]:
    """{"app"/"baseline": {state: [one cost per repeat]}}, the two servers alternated."""
    got: Dict[str, Dict[str, List[dict]]] = {"app": {}, "baseline": {}}
    for r in range(args.repeats):
        order = [("app", args.app, args.st), ("baseline", args.baseline_app, args.baseline_st)]
        for label, app, options in order if r % 2 == 0 else order[::-1]:
            say(f"repeat {r + 1}/{args.repeats}: {label} server, {app} ({', '.join(options) or 'its config'})")
            for state, cost in (await one_server(label, app, options, args)).items():
                got[label].setdefault(state, []).append(cost)
                say(f"  {state}: server {cost['server']:.1f} ms/s, browser {cost['browser']:.1f} ms/s per viewer")
    return got


def report(args, got) -> None:
    server_cores, browser_cores = args.cores
    print(f"\nISA {cpu_isa()} (lscpu: {lscpu_isa() or '?'}), {os.cpu_count()} cores; app {args.app}")
    print(f"Command: python {shlex.join([os.path.relpath(__file__, Path.cwd()), *sys.argv[1:]])}")
    print(
        f"{args.viewers} viewers per page, {args.seconds:g} s measured after {args.settle:g} s; {args.repeats} "
        f"repeats, the two servers alternated; medians. Store: {args.runs} copies of one tiny run."
        + (
            f" Server and worker on cores {sorted(server_cores)}, browsers on {sorted(browser_cores)}."
            if server_cores
            else " Every core shared."
        )  # fmt: skip
    )
    base = (f"{args.baseline_app}: " if args.baseline_app != args.app else "") + (
        ", ".join(args.baseline_st) or "its config"
    )
    app = "the app's config" + (f" + {', '.join(args.st)}" if args.st else "")
    print(
        f"\n| page | server, baseline ({base}) | server, {app} | ratio | browser, baseline | browser, app | "
        f"ratio |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for state in args.pages:
        row = [state]
        for who in ("server", "browser"):
            b = statistics.median(c[who] for c in got["baseline"][state])
            a = statistics.median(c[who] for c in got["app"][state])
            row += [f"{b:.1f} ms/s", f"{a:.1f} ms/s", f"{b / a:.2f}×" if a > 0 else "—"]
        print("| " + " | ".join(row) + " |")
    print("\nms of CPU per second, per viewer: server = the streamlit process (its worker left out); browser = "
          "Chromium and Playwright.")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--viewers", type=int, default=5, help="browser sessions per page (default 5)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds measured per page (default 20)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the loads before measuring")
    ap.add_argument("--repeats", type=int, default=3, help="alternations of the two servers (default 3)")
    ap.add_argument("--runs", type=int, default=30, help="copies of one tiny run in the store (default 30)")
    ap.add_argument("--pages", type=lambda t: [p.strip() for p in t.split(",")], default=list(STATES),
                    help=f"comma-separated, of: {', '.join(STATES)}")  # fmt: skip
    ap.add_argument("--st", action="append", default=[], metavar="OPTION=VALUE",
                    help="a Streamlit option for the app's server, on top of its config (repeatable)")  # fmt: skip
    ap.add_argument("--baseline-st", action="append", default=None, metavar="OPTION=VALUE",
                    help="the baseline server's options (default: server.fileWatcherType=auto)")  # fmt: skip
    ap.add_argument("--server-cores", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                    help="cores for the server and its worker, the others for the browsers (0: share all)")  # fmt: skip
    ap.add_argument("--app", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    ap.add_argument("--baseline-app", type=Path, help="another checkout as the baseline (default: --app)")
    args = ap.parse_args()
    args.baseline_app = (args.baseline_app or args.app).resolve()
    if args.baseline_st is None:
        args.baseline_st = [] if args.baseline_app != args.app.resolve() else ["server.fileWatcherType=auto"]
    bad = [p for p in args.pages if p not in STATES]
    if bad or args.viewers < 1 or args.repeats < 1 or args.seconds <= 0:
        sys.exit(f"bad arguments: pages must be among {', '.join(STATES)}; viewers, repeats and seconds positive")
    if async_playwright is None:
        sys.exit("Playwright for Python is missing: pip install playwright (no 'playwright install' needed).")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    args.app = args.app.resolve()
    args.work = Path(tempfile.mkdtemp(prefix="bench-viewers-"))
    args.runs_dir = args.work / "runs"
    args.env = {**os.environ, ENV_CACHE_DIR: str(args.work / "cache"), ENV_RUNS_DIR: str(args.runs_dir),
                "TORCH_HOME": str(args.work / "torch_home")}  # fmt: skip
    args.env.pop(ENV_RESNET18_WEIGHTS, None)
    failed = True
    try:
        say(f"the store: one tiny real run, copied {args.runs} times (folder {args.work})")
        fill_store(args.app, args.env, args.runs_dir, args.work, args.runs)
        args.cores = split_cores(args.server_cores)
        if args.cores[1]:
            os.sched_setaffinity(0, args.cores[1])  # Playwright and Chromium, started from here: the other cores
        got = asyncio.run(measure(args))
        report(args, got)
        failed = False
    except (RuntimeError, PlaywrightError) as e:
        sys.exit(f"failed: {e}\n(server logs kept in {args.work})")
    finally:
        if not failed:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
