"""The lessons of issue 17 measured: augmentation's cost and effect, and the MLP baseline beside the CNN.

Three tables, each printed with the CPU's ISA, on the fp32 path:

* **cost**: one training batch (``--batch`` images at ``--cost-px``) augmented off / flip-rotate / strong, as the
  engine does it (:class:`core.training.augment.Augmentation`), medians of ``--repeats``, ratio to flip-rotate;
* **parameters**: the MLP baseline against the ``--backbone`` CNN at 64, 128 and 224 px;
* **accuracy**: ``scratch`` with each augmentation, and the MLP, trained on ``--data`` at ``--px`` for
  ``--epochs`` (one-cycle, ``--lr``), once per seed: test accuracy mean ± sd and train seconds (medians). The
  exact ``python -m core train`` command of each row is printed (:func:`core.training.command.reproduce_command`).

    python benchmarks/bench_lessons.py                                  # the real flowers (../shared), 64 px
    python benchmarks/bench_lessons.py --only cost,parameters           # no training: seconds
    python benchmarks/bench_lessons.py --seeds 0 1 2 --epochs 12 --px 96
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from benchmarks.bench_training import emit, machine, section, table  # noqa: E402
from core.data.decode import to_float  # noqa: E402
from core.models.backbones import create_model  # noqa: E402
from core.models.device import configure_threads  # noqa: E402
from core.models.regimes import mlp_param_count  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.training.augment import AUGMENTS, Augmentation  # noqa: E402
from core.training.command import reproduce_command  # noqa: E402
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from core.training.train import train_run  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "flower_photos"


def cost(batch: int, px: int, repeats: int) -> None:
    section(f"Augmenting one batch of {batch} at {px} px (median of {repeats})")
    x = to_float(torch.randint(0, 256, (batch, 3, px, px), dtype=torch.uint8))
    medians = {}
    for setting in AUGMENTS:
        aug, g = Augmentation(setting), torch.Generator().manual_seed(0)
        aug(x, g)  # warm-up (torchvision's import for strong)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            aug(x, g)
            times.append(time.perf_counter() - t0)
        medians[setting] = statistics.median(times)
        emit("augment_cost", setting=setting, batch=batch, px=px, median_ms=medians[setting] * 1e3)
    base = medians["flip-rotate"]
    table(["augment", "ms per batch (median)", "× flip-rotate"],
          [[s, f"{m * 1e3:.1f}", f"{m / base:.2f}"] for s, m in medians.items()])  # fmt: skip


def parameters(backbone: str) -> None:
    section("Parameters: the MLP baseline against the CNN at the same input size (5 classes)")
    cnn = sum(p.numel() for p in create_model(backbone, 5, pretrained=False)[0].parameters())
    rows = []
    for px in (64, 128, 224):
        mlp = mlp_param_count(px, 5)
        rows.append([px, f"{mlp:,}", f"{cnn:,}", f"{mlp / cnn:.2f}"])
        emit("parameters", px=px, mlp=mlp, cnn=cnn, backbone=backbone)
    table(["px", "MLP", f"{backbone}", "MLP ÷ CNN"], rows)


def accuracy(data: Path, backbone: str, px: int, epochs: int, lr: float, seeds, limit) -> None:
    section(f"Test accuracy on {data.name} at {px} px, {epochs} epochs, seeds {', '.join(map(str, seeds))} (fp32)")
    arms = [("scratch", a) for a in AUGMENTS] + [("mlp", "off"), ("mlp", "flip-rotate")]
    rows, commands = [], []
    with tempfile.TemporaryDirectory() as runs:
        settings = Settings.from_env({**os.environ, "TRANSFERLAB_RUNS_DIR": runs})
        for regime, augment in arms:
            accs, secs = [], []
            for seed in seeds:
                cfg = RunConfig(
                    data=DataConfig(source=str(data), img_size=px, split_seed=seed, limit_per_class=limit),
                    model=ModelConfig(backbone=backbone, regime=regime),
                    train=TrainConfig(
                        epochs=epochs, lr=lr, schedule="onecycle", seed=seed, augment=augment, precision="fp32"
                    ),  # fmt: skip
                ).validate()
                s = train_run(cfg, settings)
                accs.append(s["test_acc"])
                secs.append(s["train_seconds"])
                emit("accuracy", regime=regime, augment=augment, seed=seed, test_acc=s["test_acc"],
                     train_seconds=s["train_seconds"])  # fmt: skip
                if seed == seeds[0]:
                    commands.append(reproduce_command(cfg.to_dict()))
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            rows.append([regime, augment, f"{statistics.mean(accs):.3f} ± {sd:.3f}",
                         " ".join(f"{a:.3f}" for a in accs), f"{statistics.median(secs):.0f}"])  # fmt: skip
    table(["regime", "augment", "test acc (mean ± sd)", "per seed", "train s (median)"], rows, "llrrr")
    print("Each row's first seed as a command:\n")
    print("\n".join(f"    {c}" for c in commands), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--px", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--limit-per-class", type=int, default=None)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cost-px", type=int, default=224)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--only", default="cost,parameters,accuracy")
    args = p.parse_args()
    configure_threads(None)
    print(machine(), flush=True)
    only = set(args.only.split(","))
    if "cost" in only:
        cost(args.batch, args.cost_px, args.repeats)
    if "parameters" in only:
        parameters(args.backbone)
    if "accuracy" in only:
        if not args.data.is_dir():
            sys.exit(f"error: no photos at {args.data} (give --data FOLDER)")
        accuracy(args.data, args.backbone, args.px, args.epochs, args.lr, args.seeds, args.limit_per_class)


if __name__ == "__main__":
    main()
