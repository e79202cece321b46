"""Training benchmarks on the real flowers photos (``../shared/data/flower_photos`` by default).

Prints markdown tables (and one JSON line per measurement, ``{"bench": ..., "isa": ...}``) for BENCHMARKS.md.
Every table names the CPU and its ISA (:func:`core.models.device.cpu_isa`): the same step runs several times faster
with AVX-512 BF16 or AMX than with AVX2, so a figure means nothing without it. Ratios are always against a
baseline measured in the same run; repeated timings are medians.

Sections (the ``which`` positional arguments):

* ``race`` — ``python -m core race`` in a cold subprocess, as a teacher launches it, once per precision: per
  regime the images, px, epochs, cached views, planned and actual seconds and test accuracy; the budget, the
  predicted total and the actual one (the race's own and the process wall timed from outside), their ratio,
  and the targets (all four within the budget; transfer ≥ 0.88, finetune ≥ 0.91, full ≥ 0.90 test accuracy).
* ``quick`` — an alias of ``race`` with a 2-minute budget (the "quick demo" preset is that budget).
* ``epoch`` — E epochs of this engine (``Trainer.fit``: frozen-prefix passes and validation included) against
  the course notebook's plain recipe (torchvision ``ImageFolder`` decoding every JPEG every epoch with PIL
  transforms, ``DataLoader(batch_size=32, shuffle=True)``, Adam lr 1e-4, fp32) on the engine's exact train
  split, from the same ImageNet initial weights: median plain s/epoch, engine s/epoch, the speed-up, and the
  validation accuracy after each epoch on both sides. Default ``efficientnet_lite0:finetune``.
* ``transfer`` — the ``transfer`` regime end to end (its own recipe: 30 epochs, one-cycle lr 3e-3, weight
  decay 1e-2, default cached views) against the notebook recipe (10 epochs, lr 1e-4 constant) in the same run:
  wall seconds of ``train_run`` with the data already decoded (decoding reported on its own), test accuracy,
  frozen-pass runtime; and the target "≤ 90 s wall at 224 px on all training photos, fp32 path". Then, on one
  plain view of frozen features, the regime (its own recipe and the notebook's, through ``train_run``) against
  the linear probe's optimum: logistic regression by L-BFGS with its L2 weight chosen on val.
* ``fastpath`` — ``finetune`` (Lite0, 4 epochs, one-cycle lr 3e-4, 1 view): frozen-prefix cache on against
  off, and the cache kept in fp16 against fp32; then ``transfer`` alone against ``transfer`` run right after
  ``finetune`` on the same images (continuing from finetune's cached activations).
* ``runtime`` — frozen forward passes (inference, batch 32) of the transfer prefix of both backbones at 128
  and 224 px, and of Lite0's finetune prefix at 224 px: eager PyTorch (channels_last, no_grad), ONNX Runtime,
  OpenVINO when installed: img/s, ratio against eager, max |difference| of outputs against eager.
* ``ablation`` — training steps (forward + backward + fused Adam) of ``resnet18:scratch`` and
  ``efficientnet_lite0:full`` on real decoded batches, one setting varied at a time: precision ×
  channels_last, batch 16/32/64, threads, image size 112-224 (the per-image cost of progressive resizing),
  and ``torch.compile`` at 128 px (its compile time reported separately).
* ``probe`` — :func:`core.training.throughput.probe` for Lite0 twice (its duration with exports possibly cached, and
  again), the img/s it measured for each kind of work at each size, and the plans it makes for 2, 5 and 10
  minute budgets on the data's per-class counts.
* ``regimes`` — the four regimes with the offline ImageNet backbone, plus ResNet18 from scratch, at
  ``--img-size`` and ``--epochs`` with the notebook's settings, end to end through
  :func:`core.training.train.train_run`.

``--precision fp32`` (default), ``bf16`` or ``both``: bf16 runs only on CPUs with native bf16 (AVX-512 BF16 or
AMX); elsewhere it is emulated and about 10× slower, so it is skipped with a note. ``--smoke`` shrinks every
section (12 images per class, 64 px, 1-2 epochs, 1 repeat, a 1-minute race) to check that it runs.

Full run (about an hour on the 2-core benchmark machine, longer with ``--precision both``)::

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --precision both                 # the same, bf16 rows added
    python benchmarks/bench_training.py regimes --epochs 5
    python benchmarks/bench_training.py quick

Each section on its own: ``python benchmarks/bench_training.py SECTION [SECTION ...] [--data DIR]``; a check
that they all run: ``python benchmarks/bench_training.py race epoch transfer fastpath runtime ablation probe
regimes --smoke``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.decode import to_float  # noqa: E402
from core.models.backbones import create_model  # noqa: E402
from core.models.device import (  # noqa: E402
    autocast_context,
    configure_threads,
    cpu_has_native_bf16,
    cpu_isa,
    cpu_model,
    to_device,  # noqa: E402
)
from core.models.inference import evaluate_model  # noqa: E402
from core.models.regimes import apply_regime  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.training import feature_cache  # noqa: E402
from core.training.augment import Augmentation, resize_batch  # noqa: E402
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig, apply_preset, regime_defaults  # noqa: E402
from core.training.dataset import PreparedData, prepare_data  # noqa: E402
from core.training.engine import Trainer, make_optimizer  # noqa: E402
from core.training.train import train_run  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"
DEFAULT_SECTIONS = ["race", "epoch", "transfer", "fastpath", "runtime", "ablation", "probe"]
CPU = torch.device("cpu")
LITE0 = "efficientnet_lite0"
TARGET_ACC = {"transfer": 0.88, "finetune": 0.91, "full": 0.90}
TRANSFER_TARGET_SECONDS = 90.0


# ------------------------------------------------------------------------------------------------ helpers


def machine() -> str:
    import platform

    return (
        f"{cpu_model()}, ISA {cpu_isa()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, native bf16: {cpu_has_native_bf16()}, "
        f"python {platform.python_version()}"
    )


def emit(kind: str, **row) -> None:
    print(json.dumps({"bench": kind, "isa": cpu_isa(), **row}, default=str), flush=True)


def section(title: str) -> None:
    """A section's heading: what it measures and on which CPU."""
    print(
        f"\n### {title}\n\nCPU: {cpu_model()}, ISA **{cpu_isa()}**, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        flush=True,
    )


def table(header: Sequence[str], rows: Sequence[Sequence], align: str = "") -> None:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    print("\n| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print(flush=True)


def acc(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.3f}"


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def settings_for(tmp: Path) -> Settings:
    base = Settings.from_env()
    return Settings(cache_dir=base.cache_dir, runs_dir=tmp / "runs", resnet18_weights=base.resnet18_weights)


def precisions_for(asked: str) -> Tuple[List[str], str]:
    """The precisions to run, and a note on what was skipped (bf16 where the CPU only emulates it)."""
    wanted = ["fp32", "bf16"] if asked == "both" else [asked]
    if "bf16" in wanted and not cpu_has_native_bf16():
        note = (
            f"bf16 is emulated on this CPU (ISA {cpu_isa()}: no AVX-512 BF16 or AMX), about 10× slower than "
            f"fp32, so it is skipped"
        )
        wanted = [p for p in wanted if p != "bf16"] or ["fp32"]
        return wanted, note
    return wanted, ""


def clear_activations() -> None:
    """Forget every cached frozen-prefix output, so the next run computes its own (decoded images stay)."""
    feature_cache.STORE.clear()


@dataclasses.dataclass
class Opts:
    data: Path
    data_cfg: DataConfig  # the size and limit every section decodes at (its own size where it varies it)
    epochs: int
    precisions: List[str]
    precision_note: str
    repeats: int
    steps: int
    warmup: int
    budget_minutes: float
    smoke: bool
    tmp: Path

    @property
    def settings(self) -> Settings:
        return settings_for(self.tmp)

    def data_at(self, img_size: int, limit: Optional[int] = None) -> DataConfig:
        return dataclasses.replace(
            self.data_cfg, img_size=img_size, limit_per_class=self.data_cfg.limit_per_class if limit is None else limit
        )

    def note_precision(self) -> None:
        if self.precision_note:
            print(f"\nNote: {self.precision_note}.")


def warm_up(settings: Settings) -> None:
    """Build the ImageNet Lite0 once, untimed: the first build in a process pays imports and reading the weights
    file, which would otherwise land on whichever run comes first."""
    create_model(LITE0, 5, True, settings)


def decode(opts: Opts, cfg: DataConfig) -> Tuple[PreparedData, float]:
    t = time.perf_counter()
    prepared = prepare_data(cfg, opts.settings)
    return prepared, time.perf_counter() - t


# --------------------------------------------------------------------------------------------------- race


def bench_race(opts: Opts, minutes: float) -> None:
    """``python -m core race`` in a cold subprocess per precision; the plan next to what happened."""
    for precision in opts.precisions:
        section(f"race: {minutes:g}-minute budget, {precision}")
        opts.note_precision()
        runs_dir = opts.tmp / f"race-{precision}-{minutes:g}min-{time.monotonic_ns()}"
        cmd = [
            sys.executable,
            "-m",
            "core",
            "race",
            "--data",
            str(opts.data),
            "--budget-minutes",
            f"{minutes:g}",
            "--precision",
            precision,
            "--runs-dir",
            str(runs_dir),
            "--quiet",
        ]
        print(f"\n`{' '.join(cmd[1:])}` (cwd {ROOT})", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        external = time.perf_counter() - t
        lines = []
        for line in proc.stdout.splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        final = next((d for d in reversed(lines) if isinstance(d, dict) and "budget_seconds" in d), None)
        if final is None:
            tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
            print(f"\nThe race did not finish (exit status {proc.returncode}, {external:.0f} s):\n```\n{tail}\n```")
            emit(
                "race_error",
                precision=precision,
                budget_minutes=minutes,
                returncode=proc.returncode,
                external_wall_seconds=round(external, 1),
                stderr_tail=tail,
            )
            continue
        rows, by_regime = [], {}
        for r in final["runs"]:
            run_dir = Path(r["run_dir"])
            cfg = json.loads((run_dir / "config.json").read_text())
            split = json.loads((run_dir / "split.json").read_text())
            summary = {}
            with contextlib.suppress(OSError, ValueError):
                summary = json.loads((run_dir / "summary.json").read_text())
            d, tr = cfg["data"], cfg["train"]
            px = f"{tr['train_img_size']}→{d['img_size']}" if tr.get("train_img_size") else str(d["img_size"])
            views = tr["feature_views"] if r["regime"] in ("transfer", "finetune") else None
            shared = (summary.get("setup") or {}).get("cache_shared")
            row = dict(
                precision=precision,
                regime=r["regime"],
                status=r["status"],
                images=len(split["splits"]["train"]),
                px=px,
                epochs=tr["epochs"],
                views=views,
                planned_seconds=r["planned_seconds"],
                seconds=r["seconds"],
                test_acc=r["test_acc"],
                cache_shared=shared,
                breakdown=(cfg.get("plan") or {}).get("breakdown"),
            )
            emit("race_run", budget_minutes=minutes, **row)
            rows.append(row)
            by_regime[r["regime"]] = row
        table(
            ["regime", "images", "px", "epochs", "views", "planned s", "actual s", "test acc", "status"],
            [
                [
                    r["regime"] + (f" (continues from {r['cache_shared']})" if r["cache_shared"] else ""),
                    f"{r['images']:,}",
                    r["px"],
                    r["epochs"],
                    r["views"] if r["views"] is not None else "—",
                    f"{r['planned_seconds']:.0f}",
                    f"{r['seconds']:.0f}",
                    acc(r["test_acc"]),
                    r["status"],
                ]
                for r in rows
            ],
            "lrrrrrrrl",
        )
        budget, predicted, wall = final["budget_seconds"], final["predicted_seconds"], final["wall_seconds"]
        table(
            ["race total", "seconds"],
            [
                ["budget", f"{budget:.0f}"],
                ["predicted (setup + planned runs)", f"{predicted:.0f}"],
                ["actual (the race's wall_seconds)", f"{wall:.0f}"],
                ["actual (the process, timed from outside: imports included)", f"{external:.0f}"],
                ["predicted / actual", f"{predicted / wall:.2f}" if wall else "—"],
            ],
        )
        emit(
            "race",
            precision=precision,
            budget_seconds=budget,
            predicted_seconds=predicted,
            wall_seconds=wall,
            external_wall_seconds=round(external, 1),
            returncode=proc.returncode,
            predicted_over_actual=round(predicted / wall, 3) if wall else None,
        )
        four = len(rows) == 4 and all(r["status"] == "finished" for r in rows)
        within = four and external <= budget
        parts = [
            f"all four within the budget ({external:.0f} s of {budget:.0f} s in the process, "
            f"{len(rows)} run(s) finished): {met(within)}"
        ]
        for regime, target in TARGET_ACC.items():
            a = by_regime.get(regime, {}).get("test_acc")
            parts.append(f"{regime} ≥ {target:.2f} ({acc(a)}): {met(a is not None and a >= target)}")
        print("**Targets:** " + "; ".join(parts) + "." + (" (smoke run: not comparable)" if opts.smoke else ""))
        if proc.returncode != 0:
            print(f"(the race exited with status {proc.returncode})")


# -------------------------------------------------------------------------------------------------- epoch


def notebook_epoch(model, loader, optimizer) -> float:
    model.train()
    t = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t


class _Plain(torch.nn.Module):
    """The classifier without its input normalisation: the notebook normalises in the transform."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.head(self.m.body(x))


def bench_epoch(opts: Opts, models: Sequence[Tuple[str, str]]) -> None:
    """E plain-recipe epochs against one engine fit of E epochs, same initial weights, same train split."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    settings, epochs = opts.settings, opts.epochs
    img_size = opts.data_cfg.img_size
    prepared, _ = decode(opts, opts.data_cfg)
    items = prepared.manifest["splits"]["train"]
    train, val = prepared.splits["train"], prepared.splits["val"]
    section(
        f"epoch: this engine against the notebook's plain recipe, {len(train):,} train images at {img_size} px, "
        f"{epochs} epochs"
    )
    opts.note_precision()
    summary = []
    for backbone, regime in models:
        probe, _ = create_model(backbone, len(prepared.classes), False)
        mean, std = probe.normalize.mean.flatten().tolist(), probe.normalize.std.flatten().tolist()
        tf = transforms.Compose(
            [
                transforms.Resize((img_size, img_size)),
                transforms.RandomHorizontalFlip(),
                transforms.RandomRotation(10),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )
        folder = ImageFolder(str(prepared.root), transform=tf)  # decodes every JPEG every epoch, as the notebook
        if list(folder.classes) != list(prepared.classes):
            sys.exit(f"ImageFolder's classes {folder.classes} differ from the engine's {list(prepared.classes)}")
        index = {Path(p).relative_to(prepared.root).as_posix(): i for i, (p, _) in enumerate(folder.samples)}
        train_set = torch.utils.data.Subset(folder, [index[rel] for rel, _ in items])  # the engine's train split
        loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, num_workers=0)

        def fresh():
            torch.manual_seed(0)
            m, _ = create_model(backbone, len(prepared.classes), regime != "scratch", settings)
            return m, apply_regime(m, regime, backbone)

        plain_model, _ = fresh()
        plain_opt = torch.optim.Adam([p for p in plain_model.parameters() if p.requires_grad], lr=1e-4)
        plain_times, plain_accs = [], []
        for e in range(epochs):
            torch.manual_seed(e)
            plain_times.append(notebook_epoch(_Plain(plain_model), loader, plain_opt))
            plain_accs.append(evaluate_model(plain_model, val).accuracy)
            emit(
                "epoch",
                backbone=backbone,
                regime=regime,
                pipeline="notebook plain",
                precision="fp32",
                epoch=e + 1,
                seconds=round(plain_times[-1], 2),
                val_acc=round(plain_accs[-1], 4),
            )
        plain = statistics.median(plain_times)
        for precision in opts.precisions:
            clear_activations()
            model, split = fresh()
            cfg = TrainConfig(epochs=epochs, batch_size=32, lr=1e-4, schedule="constant", precision=precision)
            trainer = Trainer(model, split, cfg, cache_dir=settings.cache_dir)
            r = trainer.fit(train, val)
            engine_accs = [h["val_acc"] for h in r.history]
            engine = r.train_seconds / epochs
            for h in r.history:
                emit(
                    "epoch",
                    backbone=backbone,
                    regime=regime,
                    pipeline="engine",
                    precision=precision,
                    epoch=h["epoch"],
                    seconds=round(h["seconds"], 2),
                    val_acc=round(h["val_acc"], 4),
                )
            emit(
                "epoch_summary",
                backbone=backbone,
                regime=regime,
                precision=precision,
                epochs=epochs,
                plain_median_seconds=round(plain, 2),
                engine_seconds_per_epoch=round(engine, 2),
                engine_total_seconds=round(r.train_seconds, 2),
                speedup=round(plain / engine, 2),
                setup=r.setup,
            )
            summary.append((backbone, regime, precision, plain, engine, plain_accs, engine_accs, r.setup))
    print(
        f"\nThe plain side is fp32, decodes JPEGs each epoch and its validation pass is not timed. The engine's "
        f"s/epoch is its whole fit / {epochs}: frozen-prefix passes, cached views and validation included."
    )
    table(
        [
            "backbone",
            "regime",
            "engine precision",
            "notebook plain s/epoch (median)",
            "engine s/epoch",
            "speed-up",
            "plain val acc",
            "engine val acc",
            "engine runtime · cache",
        ],
        [
            [
                b,
                rg,
                p,
                f"{pl:.1f}",
                f"{en:.1f}",
                f"**{pl / en:.2f}×**",
                " → ".join(f"{a:.3f}" for a in pa),
                " → ".join(f"{a:.3f}" for a in ea),
                f"{st.get('runtime', '—')} · "
                f"{str(st.get('cache_views', '?')) + ' view(s)' if st.get('feature_cache') else 'off'}",
            ]
            for b, rg, p, pl, en, pa, ea, st in summary
        ],
        "lllrrrlll",
    )


# ----------------------------------------------------------------------------------------------- transfer


def bench_transfer(opts: Opts) -> None:
    """The transfer regime's own recipe against the notebook recipe, end to end, data decoded beforehand."""
    settings = opts.settings
    prepared, decode_s = decode(opts, opts.data_cfg)
    size, n_train = opts.data_cfg.img_size, len(prepared.splits["train"])
    section(f"transfer: efficientnet_lite0, {size} px, {n_train:,} train images, end to end through train_run")
    opts.note_precision()
    warm_up(settings)
    emit(
        "decode",
        img_size=size,
        images=len(prepared.decoded),
        seconds=round(decode_s, 2),
        note="decoding, or loading the decoded tensors from the on-disk cache when they are there",
    )
    rows = []
    for precision in opts.precisions:
        base = RunConfig(
            data=opts.data_cfg,
            model=ModelConfig(backbone=LITE0, regime="transfer"),
            train=TrainConfig(precision=precision),
        )
        notebook = dataclasses.replace(apply_preset(base, "notebook recipe"), data=opts.data_cfg)
        for label, cfg in (("transfer's own recipe", regime_defaults(base)), ("notebook recipe", notebook)):
            clear_activations()
            t = time.perf_counter()
            s = train_run(cfg, settings, data=prepared)
            wall = time.perf_counter() - t
            tr = cfg.train
            row = dict(
                recipe=label,
                precision=precision,
                epochs=tr.epochs,
                lr=tr.lr,
                schedule=tr.schedule,
                weight_decay=tr.weight_decay,
                views=s["setup"].get("cache_views"),
                img_size=size,
                n_train=n_train,
                wall_seconds=round(wall, 2),
                train_seconds=s["train_seconds"],
                test_acc=round(s["test_acc"], 4),
                best_val_acc=round(s["best_val_acc"], 4),
                runtime=s["setup"].get("runtime"),
                setup=s["setup"],
            )
            emit("transfer", **row)
            rows.append(row)
    print(
        f"\nDecoding the {len(prepared.decoded):,} images at {size} px beforehand: {decode_s:.1f} s (from the "
        f"on-disk cache when it was warm). Each run starts with no cached activations; wall = the train_run call. "
        f"The first row also pays this process's first ONNX Runtime session (conservative for the target)."
    )
    by = {(r["recipe"], r["precision"]): r for r in rows}
    table(
        [
            "recipe",
            "precision",
            "epochs · lr · schedule · wd",
            "cached views",
            "wall s",
            "speed-up vs notebook recipe",
            "test acc",
            "best val acc",
            "frozen-pass runtime",
        ],
        [
            [
                r["recipe"],
                r["precision"],
                f"{r['epochs']} · {r['lr']:g} · {r['schedule']} · {r['weight_decay']:g}",
                r["views"],
                f"{r['wall_seconds']:.1f}",
                ratio(by[("notebook recipe", r["precision"])]["wall_seconds"], r["wall_seconds"]),
                acc(r["test_acc"]),
                acc(r["best_val_acc"]),
                r["runtime"],
            ]
            for r in rows
        ],
        "llllrrrrl",
    )
    own = by.get(("transfer's own recipe", "fp32"))
    if own is None:
        print("Target ≤ 90 s wall (fp32 path): not measured (fp32 was not asked for).")
    else:
        full = size == 224 and opts.data_cfg.limit_per_class is None
        print(
            f"**Target: ≤ {TRANSFER_TARGET_SECONDS:.0f} s wall at 224 px on all training photos, fp32 path — "
            f"{met(full and own['wall_seconds'] <= TRANSFER_TARGET_SECONDS)}: {own['wall_seconds']:.1f} s** "
            f"({size} px, {n_train:,} train images{'' if full else '; not the target setting'})."
        )
    linear_probe(opts, prepared)


def linear_probe(opts: Opts, prepared: PreparedData) -> None:
    """Does transfer's head recipe reach the linear probe's optimum? The regime trained on one plain view (its own
    recipe and the notebook's, through ``train_run``) against multinomial logistic regression fitted by L-BFGS on
    the same frozen features (fp32, the automatic frozen-pass runtime), its L2 weight chosen on val."""
    from core.models.runtime import frozen_pass
    from core.training.feature_cache import View, run_view

    model, _ = create_model(LITE0, len(prepared.classes), True, opts.settings)
    split = apply_regime(model, "transfer", LITE0)
    run = frozen_pass(
        split.prefix, to_float(prepared.splits["train"].images[:8]), "fp32", CPU, True, "auto", opts.settings.cache_dir
    )
    t = time.perf_counter()
    X = {k: run_view(prepared.splits[k].images, View(0), run, 32).float().flatten(1) for k in ("train", "val", "test")}
    Y = {k: prepared.splits[k].labels for k in X}
    extract = time.perf_counter() - t

    def accuracy(W: torch.Tensor, b: torch.Tensor, k: str) -> float:
        return float(((X[k] @ W.T + b).argmax(1) == Y[k]).float().mean())

    rows = []
    base = RunConfig(
        data=opts.data_cfg,
        model=ModelConfig(backbone=LITE0, regime="transfer"),
        train=TrainConfig(precision="fp32", feature_views=1),
    )
    notebook = dataclasses.replace(apply_preset(base, "notebook recipe"), data=opts.data_cfg)
    for label, cfg in (
        ("transfer, its own recipe", regime_defaults(base)),
        ("transfer, the notebook's recipe", notebook),
    ):
        tr = cfg.train
        s = train_run(cfg, opts.settings, data=prepared)
        rows.append(
            (
                f"{label} ({tr.epochs} epochs, {tr.schedule} {tr.lr:g}, wd {tr.weight_decay:g}), 1 view",
                s["train_seconds"],
                s["best_val_acc"],
                s["test_acc"],
            )
        )
    t, best = time.perf_counter(), None
    for lam in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
        W = torch.zeros(len(prepared.classes), X["train"].shape[1], requires_grad=True)
        b = torch.zeros(len(prepared.classes), requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=200, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(X["train"] @ W.T + b, Y["train"]) + lam * (W**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        val = accuracy(W.detach(), b.detach(), "val")
        if best is None or val > best[0]:
            best = (val, accuracy(W.detach(), b.detach(), "test"), lam)
    rows.append(
        (
            f"logistic regression by L-BFGS, L2 {best[2]:g} chosen on val among 1e-5…1e-1",
            time.perf_counter() - t,
            best[0],
            best[1],
        )
    )
    for label, seconds, val, test in rows:
        emit(
            "linear_probe",
            method=label,
            seconds=round(seconds, 2),
            val_acc=round(val, 4),
            test_acc=round(test, 4),
            feature_seconds=round(extract, 2),
            runtime=run.description,
        )
    print(
        f"\nThe linear probe's optimum on the same features: {sum(len(y) for y in Y.values()):,} images through "
        f"the frozen body in {extract:.1f} s ({run.description}), one plain view, fp32. The regime's rows are "
        f"train_run (its train s: features of this view included, or reused from the process's store)."
    )
    table(
        ["one plain view of the frozen features", "train / fit s", "val acc (regime: best epoch)", "test acc"],
        [[label, f"{seconds:.2f}", acc(val), acc(test)] for label, seconds, val, test in rows],
        "lrrr",
    )


# ----------------------------------------------------------------------------------------------- fastpath


@contextlib.contextmanager
def fp32_activation_store():
    """Keep cached activations in fp32 instead of fp16 (``feature_cache.compact`` patched, then restored)."""
    original = feature_cache.compact
    feature_cache.compact = lambda t: t.float()
    try:
        yield
    finally:
        feature_cache.compact = original


def bench_fastpath(opts: Opts) -> None:
    settings = opts.settings
    size = opts.data_cfg.img_size
    epochs = 2 if opts.smoke else 4
    prepared, _ = decode(opts, opts.data_cfg)
    n_train = len(prepared.splits["train"])
    section(f"fastpath: efficientnet_lite0 at {size} px, {n_train:,} train images, same seed")
    opts.note_precision()
    warm_up(settings)

    def run(regime: str, precision: str, **train) -> Tuple[Dict, float, float]:
        if regime == "finetune":
            cfg = RunConfig(
                data=opts.data_cfg,
                model=ModelConfig(backbone=LITE0, regime="finetune"),
                train=TrainConfig(
                    epochs=epochs,
                    batch_size=32,
                    lr=3e-4,
                    schedule="onecycle",
                    feature_views=1,
                    precision=precision,
                    **train,
                ),
            )
        else:  # transfer's own recipe, on the same images and views as finetune
            cfg = regime_defaults(
                RunConfig(
                    data=opts.data_cfg,
                    model=ModelConfig(backbone=LITE0, regime="transfer"),
                    train=TrainConfig(feature_views=1, precision=precision, **train),
                )
            )
        t = time.perf_counter()
        s = train_run(cfg, settings, data=prepared)
        return s, time.perf_counter() - t, feature_cache.STORE.nbytes() / 1e6

    for precision in opts.precisions:
        # frozen-prefix cache: fp16 store (the default), off, fp32 store; then the sharing with transfer
        clear_activations()
        on = run("finetune", precision)
        shared = run("transfer", precision)  # right after finetune, same data, size and views
        clear_activations()
        alone = run("transfer", precision)
        clear_activations()
        off = run("finetune", precision, feature_cache="off")
        clear_activations()
        with fp32_activation_store():
            on32 = run("finetune", precision)
        clear_activations()
        cache_rows = [
            ("on, fp16 store (default)", on),
            ("off (frozen prefix run every batch)", off),
            ("on, fp32 store", on32),
        ]
        for label, (s, wall, stored) in cache_rows:
            emit(
                "fastpath_cache",
                regime="finetune",
                precision=precision,
                mode=label,
                epochs=epochs,
                img_size=size,
                train_seconds=s["train_seconds"],
                wall_seconds=round(wall, 2),
                test_acc=round(s["test_acc"], 4),
                best_val_acc=round(s["best_val_acc"], 4),
                setup_cache_mb=s["setup"].get("cache_mb_estimate"),
                stored_mb=round(stored, 1),
                setup=s["setup"],
            )
        print(
            f'\nfinetune, {epochs} epochs, one-cycle lr 3e-4, 1 cached view, {precision}. "setup MB" is the '
            f"engine's own estimate (setup['cache_mb_estimate']: train views + val, sized as fp16); "
            f'"stored MB" is what the activation store actually held after the run (train, val and test).'
        )
        base_train = off[0]["train_seconds"]
        table(
            [
                "finetune, frozen-prefix cache",
                "train s",
                "speed-up vs off",
                "wall s",
                "test acc",
                "best val acc",
                "setup MB",
                "stored MB",
                "cache point · runtime",
            ],
            [
                [
                    label,
                    f"{s['train_seconds']:.1f}",
                    ratio(base_train, s["train_seconds"]),
                    f"{wall:.1f}",
                    acc(s["test_acc"]),
                    acc(s["best_val_acc"]),
                    s["setup"].get("cache_mb_estimate", "—"),
                    f"{stored:.1f}" if s["setup"].get("feature_cache") else "—",
                    f"{s['setup'].get('cache_point')} · {s['setup'].get('runtime')}",
                ]
                for label, (s, wall, stored) in cache_rows
            ],
            "lrrrrrrrl",
        )
        for label, (s, wall, _) in (("alone", alone), ("after finetune", shared)):
            emit(
                "fastpath_sharing",
                regime="transfer",
                precision=precision,
                mode=label,
                wall_seconds=round(wall, 2),
                train_seconds=s["train_seconds"],
                test_acc=round(s["test_acc"], 4),
                cache_shared=s["setup"].get("cache_shared"),
                setup=s["setup"],
            )
        note = shared[0]["setup"].get("cache_shared")
        print(
            f"\ntransfer ({alone[0]['epochs']} epochs, its own recipe, 1 view) alone against right after the "
            f"finetune run above; cache_shared after finetune: {note!r}"
            + ("" if note else " — it did NOT continue from finetune's activations")
        )
        table(
            ["transfer", "wall s", "speed-up", "test acc", "cache_shared", "runtime"],
            [
                [
                    "alone (no cached activations)",
                    f"{alone[1]:.1f}",
                    "1.00×",
                    acc(alone[0]["test_acc"]),
                    alone[0]["setup"].get("cache_shared") or "—",
                    alone[0]["setup"].get("runtime"),
                ],
                [
                    "right after finetune",
                    f"{shared[1]:.1f}",
                    ratio(alone[1], shared[1]),
                    acc(shared[0]["test_acc"]),
                    note or "—",
                    shared[0]["setup"].get("runtime"),
                ],
            ],
            "lrrrll",
        )


# ------------------------------------------------------------------------------------------------ runtime


def _timed_alternating(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> Dict[str, float]:
    """Median seconds per call of each of ``fns``, after ``warmup`` calls each, alternating per repeat."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _openvino_pass(module: torch.nn.Module, x: torch.Tensor):
    """An OpenVINO-compiled ``module`` as a float32 callable, or ``(None, reason)``."""
    try:
        import openvino as ov
    except ImportError:
        return None, "openvino is not installed (pip install openvino)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = ov.convert_model(module, example_input=x)
        compiled = ov.Core().compile_model(
            converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        )
    except Exception as e:  # conversion or compilation failed: say why, measure the others
        return None, f"OpenVINO failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return (lambda t: torch.from_numpy(compiled(t.detach().float().contiguous().numpy())[0])), ""


def bench_runtime(opts: Opts, sizes: Sequence[int]) -> None:
    from core.models.runtime import FrozenPass, frozen_pass

    settings, batch = opts.settings, 32
    section(
        f"runtime: frozen forward passes (inference), batch {batch}, median of {opts.repeats} calls after 2 "
        f"warm-ups, runtimes alternating"
    )
    opts.note_precision()
    rows = []
    cases = [(b, "transfer", s) for s in sizes for b in ("resnet18", LITE0)] + [(LITE0, "finetune", max(sizes))]
    for backbone, regime, size in cases:
        prepared, _ = decode(opts, opts.data_at(size, limit=max(opts.data_cfg.limit_per_class or 0, 8)))
        x = to_float(prepared.decoded.images[:batch])
        torch.manual_seed(0)
        model, source = create_model(backbone, len(prepared.classes), backbone == LITE0, settings)
        model = model.to(memory_format=torch.channels_last)
        split = apply_regime(model, regime, backbone)
        prefix = split.prefix.eval()
        passes: Dict[str, Callable[[], torch.Tensor]] = {}
        setup_s: Dict[str, float] = {}
        skipped: List[Tuple[str, str]] = []
        eager = FrozenPass(prefix, "fp32", CPU, True)
        passes["eager fp32"] = lambda: eager(x)
        if "bf16" in opts.precisions:
            eager16 = FrozenPass(prefix, "bf16", CPU, True)
            passes["eager bf16"] = lambda: eager16(x)
        t = time.perf_counter()
        ort = frozen_pass(prefix, x, "fp32", CPU, True, choice="onnxruntime", cache_dir=settings.cache_dir)
        setup_s["onnxruntime"] = time.perf_counter() - t
        if ort.runtime == "onnxruntime":
            passes["onnxruntime"] = lambda: ort(x)
        else:
            skipped.append(("onnxruntime", ort.note))
        t = time.perf_counter()
        ov_run, why = _openvino_pass(prefix, x)
        setup_s["openvino"] = time.perf_counter() - t
        if ov_run is not None:
            passes["openvino"] = lambda: ov_run(x)
        else:
            skipped.append(("openvino", why))
        reference = eager(x)
        outputs = {k: fn() for k, fn in passes.items()}
        secs = _timed_alternating(passes, opts.repeats)
        weights = "ImageNet" if backbone == LITE0 else "random init"
        what = f"{backbone} {regime} prefix (up to {split.cache_point}, {weights})"
        for k, s in secs.items():
            diff = float((outputs[k].float() - reference).abs().max())
            row = dict(
                backbone=backbone,
                prefix=regime,
                weights=source,
                img_size=size,
                batch=batch,
                runtime=k,
                images_per_sec=round(batch / s, 1),
                vs_eager=round(secs["eager fp32"] / s, 2),
                max_abs_diff=diff,
                setup_seconds=round(setup_s[k], 2) if k in setup_s else None,
            )
            emit("runtime", **row)
            rows.append(
                [
                    what,
                    size,
                    k,
                    f"{batch / s:.1f}",
                    f"{secs['eager fp32'] / s:.2f}×",
                    f"{diff:.2g}",
                    f"{setup_s[k]:.1f}" if k in setup_s else "—",
                    "",
                ]
            )
        for name, reason in skipped:
            emit("runtime_skipped", backbone=backbone, prefix=regime, img_size=size, runtime=name, reason=reason)
            rows.append([what, size, name, "—", "—", "—", "—", f"skipped: {reason}"])
    table(
        [
            "frozen pass",
            "px",
            "runtime",
            "img/s",
            "vs eager fp32",
            "max abs diff vs eager fp32",
            "setup s (export/convert + session)",
            "note",
        ],
        rows,
        "lrlrrrrl",
    )


# ----------------------------------------------------------------------------------------------- ablation


def _batches(
    images: torch.Tensor, labels: torch.Tensor, batch: int, px: int, channels_last: bool, count: int
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``count`` real augmented batches (as the engine makes them: resized per batch when ``px`` is smaller)."""
    g, augment = torch.Generator().manual_seed(0), Augmentation("flip-rotate")
    n, out = len(images), []
    for i in range(count):
        idx = (torch.arange(batch) + i * batch) % n
        x = resize_batch(augment(to_float(images[idx]), g), px)
        out.append((to_device(x, CPU, channels_last), labels[idx]))
    return out


def _train_steps(
    backbone: str,
    regime: str,
    classes: int,
    batches,
    precision: str,
    channels_last: bool,
    threads: int,
    compiled: bool,
    warmup: int,
    steps: int,
) -> Tuple[float, Optional[float]]:
    """``(images per second, compile seconds)``: the median of ``steps`` training steps after ``warmup`` ones."""
    torch.manual_seed(0)
    model, _ = create_model(backbone, classes, False)
    split = apply_regime(model, regime, backbone)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    split.train_mode()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], 1e-4, 0.0, CPU)
    net = torch.compile(model) if compiled else model
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:

        def step(i: int) -> None:
            x, y = batches[i % len(batches)]
            with autocast_context(precision, CPU):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()

        compile_s = None
        if compiled:  # the first call traces and compiles forward and backward
            t = time.perf_counter()
            step(0)
            compile_s = time.perf_counter() - t
        for i in range(warmup):
            step(i)
        times = []
        for i in range(steps):
            t = time.perf_counter()
            step(warmup + i)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(previous)
    return int(batches[0][1].shape[0]) / statistics.median(times), compile_s


def bench_ablation(opts: Opts, sizes: Sequence[int], compile_px: int) -> None:
    """Each compute setting varied on its own from a baseline row (channels_last, batch 32, all threads, full size)."""
    full = opts.data_cfg.img_size
    prepared, _ = decode(opts, opts.data_cfg)
    train = prepared.splits["train"]
    classes = len(prepared.classes)
    threads_all = torch.get_num_threads()
    thread_options = sorted({t for t in (1, 2) if t <= (os.cpu_count() or 1)} | {threads_all})
    p0 = opts.precisions[0]
    base = dict(precision=p0, channels_last=True, batch=32, threads=threads_all, px=full, compiled=False)
    section(
        f"ablation: training steps (forward + backward + fused Adam) on real decoded batches, median of "
        f"{opts.steps} steps after {opts.warmup} warm-up steps (making the input batch is not timed)"
    )
    opts.note_precision()
    compile_base = dict(base, precision="fp32", px=compile_px)
    groups: List[Tuple[str, Dict, List[Dict]]] = [  # (what is varied, its baseline, its rows)
        (
            "precision × channels_last",
            base,
            [dict(base, precision=p, channels_last=cl) for p in opts.precisions for cl in (False, True)],
        ),
        ("batch size", base, [dict(base, batch=b) for b in (16, 32, 64)]),
        ("threads", base, [dict(base, threads=t) for t in thread_options]),
        ("image size (progressive resizing)", base, [dict(base, px=s) for s in sizes]),
        ("torch.compile", compile_base, [compile_base, dict(compile_base, compiled=True)]),
    ]
    n_batches = min(8, opts.warmup + opts.steps + 1)

    def key(s: Dict) -> Tuple:
        return tuple(sorted(s.items()))

    for backbone, regime in (("resnet18", "scratch"), (LITE0, "full")):
        measured: Dict[Tuple, Tuple[float, Optional[float]]] = {}
        skipped: Dict[Tuple, str] = {}
        for s in [base, compile_base] + [s for _, _, rows in groups for s in rows]:  # baselines first
            if key(s) in measured or key(s) in skipped:
                continue
            if s["compiled"] and opts.smoke:
                skipped[key(s)] = (
                    "skipped in --smoke: compiling the training step takes ~45 s (ResNet18) to ~2 min (Lite0) here"
                )
                continue
            batches = _batches(train.images, train.labels, s["batch"], s["px"], s["channels_last"], n_batches)
            try:
                measured[key(s)] = _train_steps(
                    backbone,
                    regime,
                    classes,
                    batches,
                    s["precision"],
                    s["channels_last"],
                    s["threads"],
                    s["compiled"],
                    opts.warmup,
                    opts.steps,
                )
            except Exception as e:  # torch.compile without a working compiler, for one
                if not s["compiled"]:
                    raise
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                skipped[key(s)] = f"torch.compile failed, skipped ({reason})"
            del batches
        rows = []
        for group, baseline, settings_list in groups:
            ref = measured[key(baseline)][0]
            for s in settings_list:
                if key(s) in skipped:
                    rows.append((group, s, None, None, skipped[key(s)]))
                    continue
                ips, compile_s = measured[key(s)]
                note = "baseline" if s == baseline else ""
                if compile_s is not None:
                    note = f"compile (the first call) {compile_s:.1f} s"
                elif group.startswith("image size") and s != baseline:
                    note = f"{(s['px'] / full) ** 2:.2f}× the pixels of {full} px"
                rows.append((group, s, ips, ips / ref, note))
                emit(
                    "ablation",
                    backbone=backbone,
                    regime=regime,
                    group=group,
                    **s,
                    images_per_sec=round(ips, 2),
                    vs_baseline=round(ips / ref, 3),
                    compile_seconds=compile_s,
                    baseline=dict(baseline),
                )
        print(
            f"\n{backbone} {regime}: baseline {p0}, channels_last, batch 32, {threads_all} threads, {full} px "
            f"(torch.compile rows: against eager fp32 at {compile_px} px)"
        )
        table(
            [
                "backbone",
                "regime",
                "ISA",
                "varied",
                "precision",
                "channels_last",
                "batch",
                "threads",
                "px",
                "torch.compile",
                "img/s",
                "vs baseline",
                "note",
            ],
            [
                [
                    backbone,
                    regime,
                    cpu_isa(),
                    g,
                    s["precision"],
                    s["channels_last"],
                    s["batch"],
                    s["threads"],
                    s["px"],
                    "on" if s["compiled"] else "off",
                    f"{ips:.1f}" if ips else "—",
                    f"{r:.2f}×" if r else "—",
                    note,
                ]
                for g, s, ips, r, note in rows
            ],
            "llllllrrrlrrl",
        )


# -------------------------------------------------------------------------------------------------- probe


def _probe_settings(opts: Opts) -> Settings:
    """The real cache, or in --smoke a private copy of its exports, so a smoke probe never replaces the
    machine's kept measurement that races plan with."""
    base = opts.settings
    if not opts.smoke:
        return base
    cache = opts.tmp / "probe-cache"
    (cache / "runtime").mkdir(parents=True, exist_ok=True)
    src = base.cache_dir / "runtime"
    if src.is_dir():
        for f in src.iterdir():
            target = cache / "runtime" / f.name
            if f.suffix == ".onnx" and not target.exists():
                os.symlink(f, target)
            elif f.name == "choices.json":
                shutil.copy(f, target)
    return dataclasses.replace(base, cache_dir=cache)


def bench_probe(opts: Opts, budgets_minutes: Sequence[float] = (2, 5, 10)) -> None:
    from core.data.imagefolder import scan_image_folder
    from core.data.splits import limit_per_class
    from core.data.tensor_cache import is_cached
    from core.errors import ConfigError
    from core.training import throughput
    from core.training.planner import LADDERS, plan_race
    from core.training.race import decode_seconds_per_image

    settings = _probe_settings(opts)
    section(f"probe: core.training.throughput.probe({LITE0!r}, fp32, refresh=True), twice")
    real_sizes = throughput.PROBE_SIZES, throughput.SMALL_SIZE
    if opts.smoke:  # a private cache, and small probe sizes: the plans below extrapolate from them
        throughput.PROBE_SIZES, throughput.SMALL_SIZE = (48, 64), 32
        print(
            f"\n(--smoke: probing at {throughput.PROBE_SIZES} px instead of {real_sizes[0]}, into a private cache "
            f"{settings.cache_dir} with the real exports linked in)"
        )
    tps = []
    try:
        for i in range(2):
            t = time.perf_counter()
            tps.append(throughput.probe(LITE0, settings, "fp32", refresh=True))
            tp = tps[-1]
            emit(
                "probe",
                attempt=i + 1,
                probe_seconds=tp.probe_seconds,
                call_seconds=round(time.perf_counter() - t, 2),
                build_seconds=tp.build_seconds,
                runtimes=tp.runtimes,
                machine=tp.machine,
                images_per_sec={k: {s: round(1 / v, 1) for s, v in d.items()} for k, d in tp.per_image.items()},
            )
        sizes = [str(s) for s in sorted({int(s) for d in tps[1].per_image.values() for s in d})]
    finally:
        throughput.PROBE_SIZES, throughput.SMALL_SIZE = real_sizes
    print(
        f"\nprobe_seconds: first {tps[0].probe_seconds:.1f} s (exports possibly cached already), second "
        f"{tps[1].probe_seconds:.1f} s; building the model: {tps[1].build_seconds:.2f} s."
    )
    table(
        ["kind", "runtime", *[f"{s} px img/s (1st · 2nd)" for s in sizes]],
        [
            [
                k,
                tps[1].runtimes.get(k, "torch"),
                *[
                    " · ".join(f"{1 / tp.per_image[k][s]:.0f}" for tp in tps) if s in tps[1].per_image[k] else "—"
                    for s in sizes
                ],
            ]
            for k in throughput.KINDS
        ],
        "ll" + "r" * len(sizes),
    )
    listing = scan_image_folder(opts.data)
    counts = listing.counts()
    per_class = [counts[c] for c in listing.classes]
    decoded, missing = [], []
    for key in {(r.img_size, r.limit_per_class) for ladder in LADDERS.values() for r in ladder}:
        files, _ = limit_per_class(listing, key[1], 0)
        (decoded if is_cached(opts.data, files, key[0], opts.settings.cache_dir) else missing).append(key)
    decode_s = decode_seconds_per_image(opts.data, listing.files) if missing else 0.0
    print(
        f"Plans from the second probe for {sum(per_class):,} images ({', '.join(map(str, per_class))} per class); "
        f"{len(decoded)} of {len(decoded) + len(missing)} ladder sizes already decoded, decoding "
        f"{decode_s * 1e3:.1f} ms per image otherwise."
    )
    for minutes in budgets_minutes:
        try:
            plan = plan_race(minutes * 60, tps[1], per_class, decode_seconds_per_image=decode_s, decoded=decoded)
        except ConfigError as e:
            print(f"\n{minutes:g} minutes: no plan ({e})")
            emit("probe_plan", budget_minutes=minutes, error=str(e))
            continue
        rows = [p.row() for p in plan.runs]
        emit("probe_plan", budget_minutes=minutes, predicted_seconds=round(plan.predicted_seconds, 1), runs=rows)
        print(
            f"\n{minutes:g}-minute budget ({minutes * 60:.0f} s): predicted total {plan.predicted_seconds:.0f} s "
            f"({plan.predicted_seconds / (minutes * 60):.0%} of the budget), {plan.precision}"
        )
        keys = list(rows[0])
        table(keys, [[r[k] if r[k] is not None else "—" for k in keys] for r in rows], "lrrrrrl")


# ------------------------------------------------------------------------------------------------ regimes


def bench_regimes(opts: Opts) -> None:
    settings = opts.settings
    size, epochs = opts.data_cfg.img_size, opts.epochs
    prepared, decode_s = decode(opts, opts.data_cfg)
    section(f"regimes: the four regimes and ResNet18 from scratch, {size} px, {epochs} epochs, batch 32, Adam lr 1e-4")
    opts.note_precision()
    emit(
        "decode",
        img_size=size,
        images=len(prepared.decoded),
        seconds=round(decode_s, 2),
        note="decoding, or loading the decoded tensors from the on-disk cache when they are there",
    )
    rows = [(LITE0, r) for r in ("scratch", "transfer", "finetune", "full")] + [("resnet18", "scratch")]
    out = []
    for precision in opts.precisions:
        for backbone, regime in rows:
            clear_activations()
            cfg = RunConfig(
                data=opts.data_cfg,
                model=ModelConfig(backbone=backbone, regime=regime),
                train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-4, precision=precision),
            )
            t = time.perf_counter()
            s = train_run(cfg, settings, data=prepared)
            wall = time.perf_counter() - t
            row = dict(
                backbone=backbone,
                regime=regime,
                precision=precision,
                epochs=epochs,
                img_size=size,
                trainable_params=s["trainable_params"],
                best_epoch=s["best_epoch"],
                best_val_acc=round(s["best_val_acc"], 4),
                test_acc=round(s["test_acc"], 4),
                train_seconds=round(s["train_seconds"], 1),
                wall_seconds=round(wall, 1),
                setup=s["setup"],
            )
            emit("regime", **row)
            out.append(row)
    print(
        f'\nDecoding beforehand: {decode_s:.1f} s. "train s" is the engine\'s fit; "wall s" the train_run call '
        f"(model building and the test split included)."
    )
    table(
        [
            "backbone",
            "regime",
            "precision",
            "trainable params",
            "epochs",
            "best val acc (epoch)",
            "test acc",
            "train s",
            "wall s",
        ],
        [
            [
                r["backbone"],
                r["regime"],
                r["precision"],
                f"{r['trainable_params']:,}",
                r["epochs"],
                f"{r['best_val_acc']:.3f} ({r['best_epoch']})",
                acc(r["test_acc"]),
                f"{r['train_seconds']:.0f}",
                f"{r['wall_seconds']:.0f}",
            ]
            for r in out
        ],
        "lllrrrrrr",
    )


# --------------------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "which",
        nargs="*",
        default=DEFAULT_SECTIONS,
        help=f"sections (default: {' '.join(DEFAULT_SECTIONS)}); also: quick, regimes",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="an ImageFolder dataset, or 'sample' (default: ../shared/data/flower_photos)",
    )
    p.add_argument("--epochs", type=int, default=3, help="epoch and regimes sections (default 3)")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--limit-per-class", type=int, default=None, help="at most K images per class (default: all)")
    p.add_argument("--epoch-models", default=f"{LITE0}:finetune", help="backbone:regime pairs for the epoch section")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per frozen pass (runtime section)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per ablation row")
    p.add_argument("--budget-minutes", type=float, default=5.0, help="the race section's budget (default 5)")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default="fp32")
    p.add_argument("--smoke", action="store_true", help="shrink everything, to check each section runs")
    args = p.parse_args()
    unknown = [
        w
        for w in args.which
        if w not in ("race", "quick", "epoch", "transfer", "fastpath", "runtime", "ablation", "probe", "regimes")
    ]
    if unknown:
        sys.exit(f"unknown section(s): {', '.join(unknown)}")
    if str(args.data) in ("sample", "flowers"):
        from core.data.sources import resolve_source

        args.data = resolve_source(str(args.data), Settings.from_env())
    args.data = args.data.resolve()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}")
    configure_threads(None)
    precisions, note = precisions_for(args.precision)
    limit, size, epochs = args.limit_per_class, args.img_size, args.epochs
    repeats, steps, warmup, budget = args.repeats, args.steps, 4, args.budget_minutes
    runtime_sizes, ablation_sizes, compile_px = (128, 224), sorted({112, 128, 160, 224, size}), 128
    if args.smoke:
        limit, size, epochs = limit or 12, 64, min(epochs, 2)
        repeats, steps, warmup, budget = 1, 2, 1, min(budget, 1.0)
        runtime_sizes, ablation_sizes, compile_px = (64,), [48, 64], 48
    print(f"# machine: {machine()}")
    print(
        f"# precisions: {', '.join(precisions)}"
        + (f" ({note})" if note else "")
        + (" · --smoke: shrunk, timings not comparable" if args.smoke else ""),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        opts = Opts(
            data=args.data,
            data_cfg=DataConfig(source=str(args.data), img_size=size, limit_per_class=limit),
            epochs=epochs,
            precisions=precisions,
            precision_note=note,
            repeats=repeats,
            steps=steps,
            warmup=warmup,
            budget_minutes=budget,
            smoke=args.smoke,
            tmp=Path(tmp),
        )
        models = [tuple(m.split(":")) for m in args.epoch_models.split(",")]
        for which in args.which:
            t = time.perf_counter()
            {
                "race": lambda: bench_race(opts, budget),
                "quick": lambda: bench_race(opts, 2.0),
                "epoch": lambda: bench_epoch(opts, models),
                "transfer": lambda: bench_transfer(opts),
                "fastpath": lambda: bench_fastpath(opts),
                "runtime": lambda: bench_runtime(opts, runtime_sizes),
                "ablation": lambda: bench_ablation(opts, ablation_sizes, compile_px),
                "probe": lambda: bench_probe(opts),
                "regimes": lambda: bench_regimes(dataclasses.replace(opts, epochs=1 if args.smoke else epochs)),
            }[which]()
            print(f"# {which}: {time.perf_counter() - t:.0f} s (ISA {cpu_isa()})", flush=True)


if __name__ == "__main__":
    main()
