"""Training benchmarks on the real flowers photos (``../shared/data/flower_photos`` by default).

Prints markdown tables (and one JSON line per measurement) for BENCHMARKS.md:

* ``regimes`` — the four regimes with the offline ImageNet backbone, plus ResNet18 from scratch: test
  accuracy and wall time, end to end through :func:`core.train.train_run` (decoding excluded: the decoded
  tensor cache is warmed first and its time reported separately).
* ``epoch`` — one training epoch of this engine against the course notebook's plain recipe: torchvision
  ``ImageFolder`` decoding JPEGs every epoch with PIL transforms, fp32, same model, same batch size, same
  split; for several backbone/regime pairs, timed in the same process, alternating, reported as medians
  and a ratio, each followed by the validation accuracy it reached.
* ``fastpath`` — the transfer regime with and without the cached-features fast path, same seed: time and
  accuracy.

* ``ablation`` — each compute fast path on its own (fp32/bf16 × channels_last off/on), training steps on real
  decoded batches.
* ``quick`` — the four regimes launched with the "quick demo" preset, decoding included: what a teacher
  waits for in class.

Run: ``python benchmarks/bench_training.py [regimes|epoch|fastpath|quick ...] [--data DIR] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.backbones import create_model  # noqa: E402
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from core.data import prepare_data  # noqa: E402
from core.engine import Trainer, autocast_context, configure_threads, cpu_has_native_bf16, evaluate_model  # noqa: E402
from core.regimes import apply_regime  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.train import train_run  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"


def machine() -> str:
    import os
    import platform

    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"native bf16: {cpu_has_native_bf16()}, python {platform.python_version()}")


def emit(kind: str, **row) -> None:
    print(json.dumps({"bench": kind, **row}), flush=True)


def settings_for(tmp: Path) -> Settings:
    base = Settings.from_env()
    return Settings(cache_dir=base.cache_dir, runs_dir=tmp / "runs", resnet18_weights=base.resnet18_weights)


def bench_regimes(data: Path, epochs: int, img_size: int, tmp: Path) -> None:
    settings = settings_for(tmp)
    t = time.perf_counter()
    prepare_data(DataConfig(source=str(data), img_size=img_size), settings)
    emit("decode", seconds=round(time.perf_counter() - t, 1), note="first call decodes; later calls hit the cache")
    rows = [("efficientnet_lite0", r) for r in ("scratch", "transfer", "finetune", "full")] + [("resnet18", "scratch")]
    table = []
    for backbone, regime in rows:
        cfg = RunConfig(data=DataConfig(source=str(data), img_size=img_size),
                        model=ModelConfig(backbone=backbone, regime=regime),
                        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-4))
        t = time.perf_counter()
        s = train_run(cfg, settings)
        wall = time.perf_counter() - t
        row = dict(backbone=backbone, regime=regime, epochs=epochs, img_size=img_size,
                   trainable_params=s["trainable_params"], best_epoch=s["best_epoch"],
                   best_val_acc=round(s["best_val_acc"], 4), test_acc=round(s["test_acc"], 4),
                   train_seconds=round(s["train_seconds"], 1), wall_seconds=round(wall, 1),
                   setup=s["setup"])
        emit("regime", **row)
        table.append(row)
    print("\n| backbone | regime | trainable params | epochs | best val acc (epoch) | test acc | train s | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['backbone']} | {r['regime']} | {r['trainable_params']:,} | {r['epochs']} | "
              f"{r['best_val_acc']:.3f} ({r['best_epoch']}) | {r['test_acc']:.3f} | {r['train_seconds']:.0f} | "
              f"{r['wall_seconds']:.0f} |")


def notebook_epoch(model, loader, optimizer) -> float:
    model.train()
    t = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t


def bench_epoch(data: Path, img_size: int, models, repeats: int, tmp: Path) -> None:
    """For each (backbone, regime): alternate plain and engine epochs on two copies of the same initial model."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    settings = settings_for(tmp)
    prepared = prepare_data(DataConfig(source=str(data), img_size=img_size), settings)
    items = prepared.manifest["splits"]["train"]
    summary = []
    for backbone, regime in models:
        probe, _ = create_model(backbone, len(prepared.classes), False)
        mean, std = probe.mean.flatten().tolist(), probe.std.flatten().tolist()
        tf = transforms.Compose([transforms.Resize((img_size, img_size)), transforms.RandomHorizontalFlip(),
                                 transforms.RandomRotation(10), transforms.ToTensor(), transforms.Normalize(mean, std)])
        folder = ImageFolder(str(prepared.root), transform=tf)  # decodes every JPEG every epoch, as the notebook
        index = {Path(p).relative_to(prepared.root).as_posix(): i for i, (p, _) in enumerate(folder.samples)}
        train_set = torch.utils.data.Subset(folder, [index[rel] for rel, _ in items])  # the engine's train split
        loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, num_workers=0)

        def fresh():
            torch.manual_seed(0)
            m, _ = create_model(backbone, len(prepared.classes), regime != "scratch", settings)
            apply_regime(m, regime, backbone)
            return m

        class _Plain(torch.nn.Module):  # the notebook normalises in the transform, so the model must not
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m.head(self.m.body(x))

        plain_model = fresh()
        plain_opt = torch.optim.Adam([p for p in plain_model.parameters() if p.requires_grad], lr=1e-4)
        engine_model = fresh()
        # one epoch per fit(): for `transfer` each call recomputes one view of cached features (worst case)
        trainer = Trainer(engine_model, TrainConfig(epochs=1, batch_size=32, lr=1e-4))
        plain_times, engine_times, plain_accs, engine_accs = [], [], [], []
        for rep in range(repeats):
            torch.manual_seed(rep)
            plain_times.append(notebook_epoch(_Plain(plain_model), loader, plain_opt))
            plain_accs.append(evaluate_model(plain_model, prepared.splits["val"]).accuracy)
            emit("epoch", backbone=backbone, regime=regime, pipeline="notebook plain", epoch=rep + 1,
                 seconds=round(plain_times[-1], 1), val_acc=round(plain_accs[-1], 4))
            r = trainer.fit(prepared.splits["train"], prepared.splits["val"])
            engine_times.append(r.train_seconds)
            engine_accs.append(r.history[-1]["val_acc"])
            emit("epoch", backbone=backbone, regime=regime, pipeline="engine", setup=trainer.setup, epoch=rep + 1,
                 seconds=round(r.train_seconds, 1), val_acc=round(engine_accs[-1], 4))
        p, e = statistics.median(plain_times), statistics.median(engine_times)
        summary.append((backbone, regime, p, e, plain_accs, engine_accs))
        emit("epoch_summary", backbone=backbone, regime=regime, plain_median=round(p, 1), engine_median=round(e, 1),
             ratio=round(p / e, 2), repeats=repeats)
    print(f"\nOne epoch, {len(items)} train images at {img_size}px, batch 32, median of {repeats} epochs "
          f"(engine time includes its validation pass; the plain one does not). Val accuracy after each epoch:")
    print("| backbone | regime | notebook plain s | engine s | speed-up | plain val acc | engine val acc |")
    print("|---|---|---:|---:|---:|---|---|")
    for backbone, regime, p, e, pa, ea in summary:
        print(f"| {backbone} | {regime} | {p:.1f} | {e:.1f} | {p / e:.2f}× | {' → '.join(f'{a:.3f}' for a in pa)} | "
              f"{' → '.join(f'{a:.3f}' for a in ea)} |")


def bench_fastpath(data: Path, img_size: int, epochs: int, tmp: Path) -> None:
    settings = settings_for(tmp)
    rows = []
    for mode in ("on", "off"):
        cfg = RunConfig(data=DataConfig(source=str(data), img_size=img_size),
                        model=ModelConfig(backbone="efficientnet_lite0", regime="transfer"),
                        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-4, feature_cache=mode))
        t = time.perf_counter()
        s = train_run(cfg, settings)
        rows.append((mode, s, time.perf_counter() - t))
        emit("fastpath", feature_cache=mode, test_acc=round(s["test_acc"], 4), best_val_acc=round(s["best_val_acc"], 4),
             train_seconds=round(s["train_seconds"], 1), wall_seconds=round(rows[-1][2], 1))
    print("\n| transfer, feature cache | best val acc | test acc | train s | wall s |\n|---|---:|---:|---:|---:|")
    for mode, s, wall in rows:
        print(f"| {mode} | {s['best_val_acc']:.3f} | {s['test_acc']:.3f} | {s['train_seconds']:.0f} | {wall:.0f} |")


def bench_ablation(data: Path, img_size: int, steps: int, tmp: Path) -> None:
    """Training steps/s of each compute setting, one at a time, on real decoded batches (median of ``steps``)."""
    settings = settings_for(tmp)
    prepared = prepare_data(DataConfig(source=str(data), img_size=img_size), settings)
    train = prepared.splits["train"]
    print(f"\nTraining step, batch 32 at {img_size}px, median of {steps} steps (after 2 warm-up steps):")
    print("| backbone | regime | precision | channels_last | img/s | vs fp32 |\n|---|---|---|---|---:|---:|")
    for backbone, regime in (("resnet18", "scratch"), ("efficientnet_lite0", "full")):
        base = None
        for precision, cl in (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)):
            torch.manual_seed(0)
            model, _ = create_model(backbone, len(prepared.classes), False)
            apply_regime(model, regime, backbone)
            cfg = TrainConfig(epochs=1, batch_size=32, precision=precision, channels_last=cl, feature_cache="off")
            trainer = Trainer(model, cfg)
            times = []
            for i in range(steps + 2):
                x = trainer._augmented(train.images[i * 32:(i + 1) * 32])
                y = train.labels[i * 32:(i + 1) * 32]
                t = time.perf_counter()
                with autocast_context(trainer.precision, trainer.device):
                    logits = trainer.model(x)
                loss = F.cross_entropy(logits.float(), y)
                trainer.optimizer.zero_grad()
                loss.backward()
                trainer.optimizer.step()
                times.append(time.perf_counter() - t)
            ips = 32 / statistics.median(times[2:])
            base = base or ips
            emit("ablation", backbone=backbone, precision=precision, channels_last=cl, images_per_sec=round(ips, 1))
            print(f"| {backbone} | {regime} | {precision} | {cl} | {ips:.1f} | {ips / base:.2f}× |")


def bench_presets(data: Path, preset: str, tmp: Path) -> None:
    """All four regimes as a teacher launches them with a preset (offline backbone), decoding included."""
    from core.config import apply_preset
    from core.tensor_cache import clear_memory_cache

    settings = settings_for(tmp)
    rows = []
    for regime in ("scratch", "transfer", "finetune", "full"):
        clear_memory_cache()
        cfg = apply_preset(RunConfig(data=DataConfig(source=str(data)),
                                     model=ModelConfig(backbone="efficientnet_lite0", regime=regime)), preset)
        t = time.perf_counter()
        s = train_run(cfg, settings)
        rows.append((regime, s, time.perf_counter() - t))
        emit("preset", preset=preset, regime=regime, test_acc=round(s["test_acc"], 4),
             train_seconds=round(s["train_seconds"], 1), wall_seconds=round(rows[-1][2], 1))
    c = rows[0][1]
    print(f"\nPreset '{preset}' ({c['img_size']} px, {c['epochs']} epochs, {sum(c['split_sizes'].values())} images), "
          f"efficientnet_lite0:\n| regime | test acc | wall s |\n|---|---:|---:|")
    for regime, s, wall in rows:
        print(f"| {regime} | {s['test_acc']:.3f} | {wall:.0f} |")
    print(f"| all four | | {sum(w for _, _, w in rows):.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="*", default=["regimes", "epoch", "fastpath"])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--epoch-models", default="resnet18:scratch,efficientnet_lite0:full,efficientnet_lite0:finetune,"
                   "efficientnet_lite0:transfer", help="backbone:regime pairs for the epoch benchmark")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}")
    configure_threads(None)
    print(f"# machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        for which in args.which:
            t = time.perf_counter()
            {"regimes": lambda: bench_regimes(args.data, args.epochs, args.img_size, Path(tmp)),
             "epoch": lambda: bench_epoch(args.data, args.img_size,
                                          [tuple(m.split(":")) for m in args.epoch_models.split(",")],
                                          args.repeats, Path(tmp)),
             "fastpath": lambda: bench_fastpath(args.data, args.img_size, args.epochs, Path(tmp)),
             "ablation": lambda: bench_ablation(args.data, args.img_size, args.repeats * 4, Path(tmp)),
             "quick": lambda: bench_presets(args.data, "quick demo", Path(tmp))}[which]()
            print(f"# {which}: {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
