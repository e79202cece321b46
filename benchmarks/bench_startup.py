"""Start-up: ``python -m core settings`` and the app's first pages (AppTest), in this tree against another.

Each measurement runs in a fresh process, the two trees interleaved; medians. The other tree is any checkout,
e.g. the revision before a change::

    git worktree add /tmp/before ce8ac17
    python benchmarks/bench_startup.py --other /tmp/before [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models.device import cpu_isa  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the checkout to compare with (the baseline)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="bench-startup-")
    trees = {"baseline": args.other.resolve(), "this": ROOT}
    rows = {name: {"cli": [], "home": [], "train": []} for name in trees}
    for tree in trees.values():  # warm the sample and the page caches once
        timed_app(tree, {**os.environ, "TRANSFERLAB_CACHE_DIR": cache, "TRANSFERLAB_RUNS_DIR": tempfile.mkdtemp()})
    for _ in range(args.repeats):
        for name, tree in trees.items():
            env = {**os.environ, "TRANSFERLAB_CACHE_DIR": cache, "TRANSFERLAB_RUNS_DIR": tempfile.mkdtemp()}
            rows[name]["cli"].append(timed_cli(tree, env))
            home, train = timed_app(tree, env)
            rows[name]["home"].append(home)
            rows[name]["train"].append(train)
    print(f"ISA {cpu_isa()}, {os.cpu_count()} cores; baseline {trees['baseline']}; median of {args.repeats}\n")
    print("| what | baseline s | this s | this/baseline |\n|---|---:|---:|---:|")
    for key, what in (("cli", "`python -m core settings`"), ("home", "Home page, cold (AppTest)"),
                      ("train", "then the Train page")):  # fmt: skip
        old, new = statistics.median(rows["baseline"][key]), statistics.median(rows["this"][key])
        print(f"| {what} | {old:.2f} | {new:.2f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
