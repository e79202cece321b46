"""A race planned to a time budget: per regime, the image size, images per class, epochs and cached views.

A teacher says how long the class can wait, not how many epochs. From this machine's measured
:class:`~core.training.throughput.Throughput`, the planner predicts what each candidate recipe costs and picks, per
regime, the best one that fits, so that the regimes finish one after another within the budget:

1. every regime has a **ladder** of recipes, cheapest first, each step buying accuracy with time
   (resolution, epochs, views) — the steps follow what BENCHMARKS.md measured on the flowers;
2. each regime gets a **share** of the budget (:data:`SHARES`) and climbs its ladder within it;
3. what is left over buys further steps, in the order of :data:`UPGRADE_ORDER`, while the total fits.

``finetune`` runs before ``transfer`` on the same images, size and views, so ``transfer`` continues from
its cached frozen prefix (:mod:`core.training.feature_cache`) and pays only for the last frozen stages and its head.
The predicted seconds of each run are kept in its config (``plan``) and shown beside the actual ones.

Baselines (``mlp``) are not planned: :func:`with_baselines` appends them after the race on scratch's images, with an
empty ``plan``, so they run on top of the budget and every view says so (:data:`BASELINES_NOT_PLANNED`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Sequence

from core.data.splits import stratified_split
from core.errors import ConfigError
from core.models.regimes import BASELINES, REGIMES
from core.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.training.throughput import Throughput

SAFETY = 0.90  # plan to this share of the budget: the rest absorbs noise between the probe and the runs
RUN_OVERHEAD_SECONDS = 1.5  # per run: its folder, config, checkpoints, predictions, evaluation set-up
LOAD_SECONDS_PER_IMAGE = 2e-4  # reading already-decoded images back from the tensor cache
HEAD_SECONDS_PER_IMAGE_EPOCH = 1.5e-5  # a linear head on cached features (measured: ~30 ms an epoch)
ORDER = ("finetune", "transfer", "full", "scratch")  # how a planned race runs: transfer reuses finetune's cache
SHARES = {"full": 0.57, "finetune": 0.27, "scratch": 0.13, "transfer": 0.03}
UPGRADE_ORDER = ("full", "finetune", "scratch", "transfer")
MIN_BUDGET_MINUTES, MAX_BUDGET_MINUTES = 1, 30


@dataclass(frozen=True)
class Recipe:
    """How one regime trains in a planned race."""

    img_size: int  # decoded, evaluated, and the size of the last epochs
    epochs: int
    lr: float
    views: int = 1  # cached views (plain images first) for regimes with a frozen prefix
    train_img_size: Optional[int] = None  # progressive resizing: the first epochs at this size
    limit_per_class: Optional[int] = None
    schedule: str = "onecycle"
    weight_decay: float = 0.0


def _ladder(lr: float, steps, **common) -> List[Recipe]:
    return [Recipe(lr=lr, **{**common, **s}) for s in steps]


# Cheapest first. finetune/full/scratch use a one-cycle schedule at a learning rate measured on the flowers
# (finetune 3e-4 and full 5e-4 reach 0.92-0.94 and 0.90-0.91 test accuracy at the top of what a 5-minute race
# on a 2-core CPU affords; scratch from random weights takes the larger 2e-3: at 64 px, 0.49 test accuracy after
# 2 epochs in the 5-minute race of BENCHMARKS.md).
# A table, one ladder per regime, several recipes a line: kept as written.
# fmt: off
LADDERS: Dict[str, List[Recipe]] = {
    "finetune": _ladder(3e-4, [
        dict(img_size=96, epochs=1, limit_per_class=100), dict(img_size=112, epochs=1), dict(img_size=128, epochs=2),
        dict(img_size=160, epochs=2), dict(img_size=160, epochs=3), dict(img_size=192, epochs=3),
        dict(img_size=224, epochs=3), dict(img_size=224, epochs=4), dict(img_size=224, epochs=4, views=2),
        dict(img_size=224, epochs=6, views=2), dict(img_size=224, epochs=8, views=3)]),
    "full": _ladder(5e-4, [
        dict(img_size=96, epochs=1, limit_per_class=100), dict(img_size=112, epochs=1), dict(img_size=128, epochs=1),
        dict(img_size=160, train_img_size=112, epochs=2), dict(img_size=160, train_img_size=128, epochs=3),
        dict(img_size=192, train_img_size=128, epochs=3), dict(img_size=224, train_img_size=160, epochs=3),
        dict(img_size=224, train_img_size=160, epochs=4), dict(img_size=224, train_img_size=192, epochs=5),
        dict(img_size=224, epochs=6)]),
    "scratch": _ladder(2e-3, [
        dict(img_size=64, epochs=1, limit_per_class=100), dict(img_size=64, epochs=2, limit_per_class=100),
        dict(img_size=64, epochs=2), dict(img_size=64, epochs=3),
        dict(img_size=96, epochs=3), dict(img_size=112, epochs=4), dict(img_size=128, epochs=5),
        dict(img_size=160, train_img_size=128, epochs=6), dict(img_size=224, train_img_size=160, epochs=8)]),
    # transfer on its own (no finetune in the race to share with); with finetune it takes finetune's images
    "transfer": _ladder(3e-3, [
        dict(img_size=96, epochs=30, limit_per_class=100), dict(img_size=128, epochs=30),
        dict(img_size=160, epochs=30), dict(img_size=192, epochs=30), dict(img_size=224, epochs=30),
        dict(img_size=224, epochs=30, views=2), dict(img_size=224, epochs=30, views=3)], weight_decay=1e-2),
}
# fmt: on


@dataclass
class RegimePlan:
    regime: str
    recipe: Recipe
    n_train: int
    predicted_seconds: float
    breakdown: Dict[str, float] = field(default_factory=dict)
    shares_cache_with: Optional[str] = None  # the earlier run whose cached prefix this one continues from

    def row(self) -> Dict:
        """One line of the plan as the Train page and the CLI show it."""
        r = self.recipe
        px = f"{r.train_img_size}→{r.img_size}" if r.train_img_size else str(r.img_size)
        return {
            "regime": self.regime,
            "images": self.n_train,
            "px": px,
            "epochs": r.epochs,
            "cached views": r.views if self.regime in ("transfer", "finetune") else None,
            "predicted s": round(self.predicted_seconds),
            "where the time goes": self.where(),
        }

    def where(self) -> str:
        """The plan's cost in words: what the seconds buy."""
        b = self.breakdown
        parts = []
        if b.get("frozen"):
            what = "the last frozen layers, after finetune's" if self.shares_cache_with else "frozen layers, once"
            parts.append(f"{what} {b['frozen']:.0f} s")
        if b.get("train") is not None:
            parts.append(f"{'head epochs' if self.regime == 'transfer' else 'training'} {b['train']:.0f} s")
        if b.get("eval"):
            parts.append(f"evaluating {b['eval']:.0f} s")
        other = b.get("data", 0) + b.get("build", 0)
        parts.append(f"loading {other:.0f} s")
        return " · ".join(parts)


@dataclass
class RacePlan:
    budget_seconds: float
    backbone: str
    precision: str
    runs: List[RegimePlan]  # in the order they run

    @property
    def predicted_seconds(self) -> float:
        return sum(r.predicted_seconds for r in self.runs)

    def get(self, regime: str) -> RegimePlan:
        return next(r for r in self.runs if r.regime == regime)

    def to_dict(self) -> Dict:
        return {
            "budget_seconds": self.budget_seconds,
            "backbone": self.backbone,
            "precision": self.precision,
            "predicted_seconds": round(self.predicted_seconds, 1),
            "runs": [{**asdict(r), "recipe": asdict(r.recipe)} for r in self.runs],
        }


def split_counts(
    per_class: Sequence[int], limit: Optional[int], val_fraction: float = 0.1, test_fraction: float = 0.1
) -> Dict[str, int]:
    """Train/val/test sizes of a dataset with ``per_class`` images per class, as :mod:`core.data.splits` splits it."""
    labels = [c for c, n in enumerate(per_class) for _ in range(min(n, limit) if limit else n)]
    return {s: len(ix) for s, ix in stratified_split(labels, val_fraction, test_fraction, seed=0).items()}


class _Costs:
    """Predicted seconds of recipes on one dataset and machine."""

    def __init__(
        self, tp: Throughput, per_class: Sequence[int], decode_seconds_per_image: float, decoded: Sequence[tuple]
    ):
        self.tp, self.per_class, self.decode_s = tp, list(per_class), decode_seconds_per_image
        self.decoded = set(decoded)  # (img_size, limit_per_class) already in the tensor cache

    def sizes(self, r: Recipe) -> Dict[str, int]:
        return split_counts(self.per_class, r.limit_per_class)

    def data_seconds(self, r: Recipe, decoded: set) -> float:
        n = sum(self.sizes(r).values())
        if (r.img_size, r.limit_per_class) in decoded:
            return n * LOAD_SECONDS_PER_IMAGE
        return n * self.decode_s

    def seconds(self, regime: str, r: Recipe, shared: bool, decoded: set) -> Dict[str, float]:
        tp, n = self.tp, self.sizes(r)
        frozen_images = n["train"] * r.views + n["val"] + n["test"]
        out = {"data": self.data_seconds(r, decoded), "build": tp.build_seconds + RUN_OVERHEAD_SECONDS}
        aug = tp.seconds("augment", r.img_size, n["train"] * (r.views - 1))
        if regime == "transfer":
            out["frozen"] = (
                tp.seconds("rest", r.img_size, frozen_images)
                if shared
                else (tp.seconds("body", r.img_size, frozen_images) + aug)
            )
            out["train"] = HEAD_SECONDS_PER_IMAGE_EPOCH * n["train"] * r.epochs
        elif regime == "finetune":
            out["frozen"] = tp.seconds("prefix", r.img_size, frozen_images) + aug
            out["train"] = (
                tp.seconds("suffix_train", r.img_size, n["train"] * r.epochs)
                + tp.warmup_seconds("suffix_train", r.img_size)
                + tp.seconds("suffix_eval", r.img_size, n["val"] * r.epochs + n["test"])
            )
        else:  # scratch, full: the whole network every batch (the measured step includes augmentation)
            small = r.train_img_size or r.img_size
            sizes = [small] * (r.epochs - 1) + [r.img_size] if r.train_img_size else [r.img_size] * r.epochs
            out["train"] = sum(tp.seconds("train", s, n["train"]) for s in sizes) + sum(
                tp.warmup_seconds("train", s) for s in set(sizes)
            )
            out["eval"] = tp.seconds("eval", r.img_size, n["val"] * r.epochs + n["test"])
        return out


def plan_race(
    budget_seconds: float,
    tp: Throughput,
    per_class: Sequence[int],
    regimes: Sequence[str] = tuple(REGIMES),
    decode_seconds_per_image: float = 0.002,
    decoded: Sequence[tuple] = (),
) -> RacePlan:
    """The best plan of ``regimes`` that fits ``budget_seconds`` on the machine ``tp`` describes.

    ``per_class`` is the number of images of each class; ``decoded`` lists the ``(img_size, limit_per_class)``
    already in the tensor cache. Raises :class:`ConfigError` when even the cheapest plan does not fit.
    """
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or not regimes:
        raise ConfigError(f"Plan which regimes? Choose among {', '.join(REGIMES)}.")
    costs = _Costs(tp, per_class, decode_seconds_per_image, decoded)
    usable = budget_seconds * SAFETY
    order = [r for r in ORDER if r in regimes]
    coupled = "transfer" in regimes and "finetune" in regimes
    level = {r: 0 for r in order}

    def recipe(regime: str, lv: Dict[str, int]) -> Recipe:
        if regime == "transfer" and coupled:  # finetune's images, size and views, so its cache serves both
            f = LADDERS["finetune"][lv["finetune"]]
            return replace(
                LADDERS["transfer"][0], img_size=f.img_size, views=f.views, limit_per_class=f.limit_per_class
            )
        return LADDERS[regime][lv[regime]]

    def evaluate(lv: Dict[str, int]) -> List[RegimePlan]:
        decoded_now, runs = set(costs.decoded), []
        for regime in order:
            r = recipe(regime, lv)
            shared = regime == "transfer" and coupled
            parts = costs.seconds(regime, r, shared, decoded_now)
            decoded_now.add((r.img_size, r.limit_per_class))
            runs.append(
                RegimePlan(
                    regime,
                    r,
                    costs.sizes(r)["train"],
                    sum(parts.values()),
                    {k: round(v, 2) for k, v in parts.items()},
                    "finetune" if shared else None,
                )
            )
        return runs

    def total(lv: Dict[str, int]) -> float:
        return sum(p.predicted_seconds for p in evaluate(lv))

    cheapest = total(level)
    if cheapest > usable:
        need = max(MIN_BUDGET_MINUTES, int(-(-cheapest / SAFETY // 60)))
        raise ConfigError(
            f"A budget of {budget_seconds / 60:.1f} min is too small for even one epoch of each "
            f"regime on this machine: the smallest plan takes about {cheapest:.0f} s. Give it at "
            f"least {need} min, or fewer regimes."
        )
    # each regime climbs its ladder within its share of the budget ...
    shares = {r: SHARES[r] for r in order}
    scale = 1 / sum(shares.values())
    for regime in order:
        if regime == "transfer" and coupled:
            continue
        while level[regime] + 1 < len(LADDERS[regime]):
            trial = {**level, regime: level[regime] + 1}
            plan = {p.regime: p for p in evaluate(trial)}
            spent = plan[regime].predicted_seconds + (
                plan["transfer"].predicted_seconds if regime == "finetune" and coupled else 0
            )
            allowed = (
                usable * scale * (shares[regime] + (shares["transfer"] if regime == "finetune" and coupled else 0))
            )
            if spent > allowed or total(trial) > usable:
                break
            level = trial
    # ... then what is left buys further steps, most valuable regimes first
    upgraded = True
    while upgraded:
        upgraded = False
        for regime in UPGRADE_ORDER:
            if regime not in level or (regime == "transfer" and coupled):
                continue
            if level[regime] + 1 < len(LADDERS[regime]):
                trial = {**level, regime: level[regime] + 1}
                if total(trial) <= usable:
                    level, upgraded = trial, True
    return RacePlan(budget_seconds=budget_seconds, backbone=tp.backbone, precision=tp.precision, runs=evaluate(level))


def race_configs(plan: RacePlan, source: str, seed: int = 0, group: str = "", preset: str = "") -> List[RunConfig]:
    """The run configs of ``plan``, in the order they should run."""
    out = []
    for p in plan.runs:
        r = p.recipe
        cfg = RunConfig(
            data=DataConfig(source=source, img_size=r.img_size, limit_per_class=r.limit_per_class, split_seed=seed),
            model=ModelConfig(backbone=plan.backbone, regime=p.regime),
            train=TrainConfig(
                epochs=r.epochs,
                batch_size=32,
                lr=r.lr,
                weight_decay=r.weight_decay,
                seed=seed,
                schedule=r.schedule,
                train_img_size=r.train_img_size,
                feature_views=r.views,
                precision=plan.precision,
            ),
            preset=preset or None,
            group=group,
            plan={
                "budget_seconds": plan.budget_seconds,
                "predicted_seconds": round(p.predicted_seconds, 1),
                "race_predicted_seconds": round(plan.predicted_seconds, 1),
                "breakdown": p.breakdown,
                "order": [q.regime for q in plan.runs],
                "shares_cache_with": p.shares_cache_with,
            },
        )
        out.append(cfg.validate())
    return out


BASELINES_NOT_PLANNED = (
    "The MLP baseline is not planned: it runs after the race, on the images of the scratch run (same size, images "
    "and epochs), on top of the time budget. It has no convolutions to pay for, so it usually takes seconds."
)


def with_baselines(configs: Sequence[RunConfig], baselines: Sequence[str] = tuple(BASELINES)) -> List[RunConfig]:
    """``configs`` (a launch, in run order) with one run of each baseline appended, in the same group: a copy of
    the launch's ``scratch`` run (else its first run) — same data, image size, epochs, learning rate and seed —
    trained at its full image size (the MLP has one input per pixel, so no progressive resizing) and unplanned
    (an empty ``plan``: see :data:`BASELINES_NOT_PLANNED`)."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"Unknown baseline '{unknown[0]}'. Choose among {', '.join(BASELINES)}.")
    if not configs:
        return []
    base = next((c for c in configs if c.model.regime == "scratch"), configs[0])
    out = list(configs)
    for name in baselines:
        cfg = RunConfig.from_dict(base.to_dict())
        cfg.model.regime, cfg.model.freeze, cfg.plan = name, None, {}
        cfg.train.train_img_size, cfg.train.feature_cache = None, "auto"
        out.append(cfg.validate())
    return out


def launch_configs(
    configs: Sequence[RunConfig], baselines: Sequence[str] = (), augment: str = "flip-rotate"
) -> List[RunConfig]:
    """A launch's runs as they train (the Train page's launch and ``python -m core race``): every one with the
    launch's ``augment``, after them one run of each of ``baselines`` (:func:`with_baselines`); validated."""
    out = with_baselines(configs, baselines)
    for cfg in out:
        cfg.train.augment = augment
        cfg.validate()
    return out
