"""The router and Home paint without torch, timm or faiss: what they import loads none of them (seconds each on a
laptop); a background thread loads them after the first paint (core.app.warmup)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from core.app.warmup import HEAVY_MODULES
from tests.helpers import ROOT


def imported_modules(path) -> list[str]:
    """The modules a file imports at its top level (``import a.b``, ``from a.b import c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            names.append(node.module)
    return names


def test_the_router_and_home_import_nothing_heavy():
    modules = sorted({m for f in ("streamlit_app.py", "app_pages/home.py") for m in imported_modules(ROOT / f)})
    assert "core.app.jobs" in modules and "core.models.backbones" in modules and "core.app.machine" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY_MODULES)!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_the_registry_and_regimes_are_read_without_torch():
    code = (
        "import sys\n"
        "from core.models.backbones import BACKBONES, pick_pretrained_backbone\n"
        "from core.models.regimes import REGIMES, display_name\n"
        "from core.settings import Settings\n"
        "assert display_name('full', with_cli=True) == 'Fine-tune everything (full)' and len(REGIMES) == 4\n"
        "print(pick_pretrained_backbone(Settings.from_env())[0], 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"


def test_warm_up_loads_them_in_the_background_once():
    code = (
        "import sys, time\n"
        "from core.app.warmup import HEAVY_MODULES, is_loaded, warm_up\n"
        "assert not is_loaded('torch')\n"
        "t = warm_up()\n"
        "assert warm_up() is t and t.daemon\n"
        "t.join(120)\n"
        "print(is_loaded('torch'), is_loaded('timm'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
