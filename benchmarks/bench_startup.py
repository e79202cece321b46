"""Start-up: ``python -m core settings``, the app's first pages (AppTest), and the first paint in a browser, in
this tree against another.

Each measurement runs in a fresh process, the two trees interleaved; medians. The other tree is any checkout,
e.g. the revision before a change::

    git worktree add /tmp/before ce8ac17
    python benchmarks/bench_startup.py --other /tmp/before [--repeats 7]

First paint: a new ``streamlit run`` server per measurement (as a teacher starts the app), then headless
Chromium at 1400x900 opens it: the seconds from the request until Home's title is shown, and until its
"This machine" figures (which need torch) are. Skipped without Playwright or Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_classroom import CHROMIUM, CHROMIUM_ARGS, async_playwright, start_server, stop_server  # noqa: E402

from core.models.device import cpu_isa  # noqa: E402

CAN_PAINT = async_playwright is not None and os.access(CHROMIUM, os.X_OK)  # the first paint needs both

# Run in the tree under test: Home cold, then Train (on the notebook recipe: no speed probe), then Compare.
APP = """
import os, sys, time
sys.path.insert(0, os.getcwd())
from streamlit.testing.v1 import AppTest
t = time.perf_counter()
at = AppTest.from_file(os.path.join(os.getcwd(), "streamlit_app.py"), default_timeout=120).run()
home = time.perf_counter() - t
at.session_state["preset"] = "notebook recipe"
t = time.perf_counter(); at.switch_page("app_pages/train.py").run(); train = time.perf_counter() - t
assert not at.exception, at.exception
print(home, train)
"""


def timed_cli(tree: Path, env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "settings"], cwd=tree, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def timed_app(tree: Path, env: dict) -> tuple:
    out = subprocess.run([sys.executable, "-c", APP], cwd=tree, env=env, check=True, capture_output=True, text=True)
    home, train = map(float, out.stdout.split()[-2:])
    return home, train


def timed_paint(tree: Path, env: dict) -> tuple:
    """(title s, machine figures s): a fresh server of ``tree``, then one browser opening Home."""

    async def paint(base_url: str) -> tuple:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                t = time.perf_counter()
                await page.goto(base_url, wait_until="commit")
                await page.get_by_role("heading", name="Transfer Lab").first.wait_for(timeout=120_000)
                title = time.perf_counter() - t
                await page.get_by_text("Device", exact=True).first.wait_for(timeout=120_000)
                return title, time.perf_counter() - t
            finally:
                await browser.close()

    with tempfile.TemporaryDirectory() as work:
        proc, base_url = start_server(tree, env, Path(work) / "streamlit.log", [])
        try:
            return asyncio.run(paint(base_url))
        finally:
            stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the checkout to compare with (the baseline)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-browser", dest="browser", action="store_false", help="skip the first paint in Chromium")
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="bench-startup-")
    trees = {"baseline": args.other.resolve(), "this": ROOT}
    rows = {name: {"cli": [], "home": [], "train": [], "title": [], "machine": []} for name in trees}
    browser = args.browser and CAN_PAINT
    for tree in trees.values():  # warm the sample and the page caches once
        timed_app(tree, {**os.environ, "TRANSFERLAB_CACHE_DIR": cache, "TRANSFERLAB_RUNS_DIR": tempfile.mkdtemp()})
    for _ in range(args.repeats):
        for name, tree in trees.items():
            env = {**os.environ, "TRANSFERLAB_CACHE_DIR": cache, "TRANSFERLAB_RUNS_DIR": tempfile.mkdtemp()}
            rows[name]["cli"].append(timed_cli(tree, env))
            home, train = timed_app(tree, env)
            rows[name]["home"].append(home)
            rows[name]["train"].append(train)
            if browser:
                title, machine = timed_paint(tree, env)
                rows[name]["title"].append(title)
                rows[name]["machine"].append(machine)
    print(f"ISA {cpu_isa()}, {os.cpu_count()} cores; baseline {trees['baseline']}; median of {args.repeats}\n")
    print("| what | baseline s | this s | this/baseline |\n|---|---:|---:|---:|")
    shown = [("cli", "`python -m core settings`"), ("home", "Home page, cold (AppTest)"),
             ("train", "then the Train page")]  # fmt: skip
    if browser:
        shown += [("title", "a new server, Home's title in the browser"), ("machine", "then its machine figures")]
    else:
        print("(no first paint: Playwright or /usr/bin/chromium is missing, or --no-browser)\n")
    for key, what in shown:
        old, new = statistics.median(rows["baseline"][key]), statistics.median(rows["this"][key])
        print(f"| {what} | {old:.2f} | {new:.2f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
