"""Run configuration: one dataclass per concern, saved with every run as ``config.json``.

Defaults follow the course notebook (Adam, lr 1e-4, cross-entropy, 224 px, 80/10/10 split, best
checkpoint by validation loss). :data:`PRESETS` holds the settings a teacher picks by name.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, Optional

from core.errors import ConfigError
from core.models.backbones import get_backbone
from core.models.device import check_precision
from core.models.regimes import get_regime
from core.models.runtime import check_runtime
from core.runs.store import saved_augment
from core.training.augment import check_augment

SCHEDULES = ("constant", "onecycle")
FEATURE_CACHE = ("auto", "on", "off")
MAX_THREADS = 256
MAX_SEED = 2**32 - 1  # what every generator here accepts (torch takes up to 2**64 - 1, numpy 2**32 - 1)


@dataclass
class DataConfig:
    source: str = "sample"  # "sample", "flowers", a folder path, or a .zip path
    img_size: int = 224
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    limit_per_class: Optional[int] = None  # use at most K images per class (seeded choice)
    split_seed: int = 0

    def validate(self) -> None:
        if not 32 <= self.img_size <= 512:
            raise ConfigError(f"Image size must be between 32 and 512 pixels, got {self.img_size}.")
        if not (
            0 < self.val_fraction < 0.5
            and 0 < self.test_fraction < 0.5
            and self.val_fraction + self.test_fraction < 0.9
        ):
            raise ConfigError("Validation and test fractions must each be in (0, 0.5) and leave room for training.")
        if not 0 <= self.split_seed <= MAX_SEED:
            raise ConfigError(f"The split seed must be between 0 and {MAX_SEED:,}, got {self.split_seed:,}.")
        if self.limit_per_class is not None and self.limit_per_class < 3:
            raise ConfigError(
                f"--limit-per-class must be at least 3 (one image each for train/val/test), got {self.limit_per_class}."
            )


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    regime: str = "transfer"
    freeze: Optional[int] = None  # finetune: number of leading parameter tensors frozen (None = backbone default)

    def validate(self) -> None:
        get_regime(self.regime)
        get_backbone(self.backbone)
        if self.freeze is not None and self.regime != "finetune":
            raise ConfigError("--freeze only applies to the 'finetune' regime.")
        if self.freeze is not None and self.freeze < 0:
            raise ConfigError(f"--freeze must be 0 or more, got {self.freeze}.")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    augment: str = "flip-rotate"  # "off", "flip-rotate" (the notebook's), "strong" (core.training.augment)
    rotation_degrees: float = 10.0  # flip-rotate, as in the notebook: flip + small rotation
    hflip: bool = True  # flip-rotate and strong: random horizontal flips
    schedule: str = "constant"  # learning rate: "constant" (the notebook) or "onecycle" (warm-up, cosine decay)
    train_img_size: Optional[int] = None  # progressive resizing: train at this size, the last epochs at img_size
    full_size_epochs: int = 1  # with train_img_size: how many final epochs run at the full img_size
    precision: str = "auto"  # "auto" (bf16 on CPUs with native bf16, else fp32), "fp32", "bf16"
    channels_last: bool = True
    feature_cache: str = "auto"  # "auto" (on when the regime has a frozen prefix), "on", "off"
    feature_views: int = 2  # views of the training set whose frozen-prefix output is cached: the plain images,
    # then seeded augmented copies (none with augment "off"); epochs cycle through them
    runtime: str = "auto"  # frozen passes: "auto" (the faster of torch and onnxruntime here), "torch", "onnxruntime"
    num_threads: Optional[int] = None  # torch threads (None = all cores)
    device: str = "auto"  # "auto" (cuda, mps, cpu), or a torch device string

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"Epochs must be at least 1, got {self.epochs}.")
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"Batch size must be between 1 and 1024, got {self.batch_size}.")
        if not 0 < self.lr < 1:
            raise ConfigError(f"Learning rate must be between 0 and 1, got {self.lr}.")
        check_precision(self.precision)
        check_augment(self.augment)
        if self.feature_cache not in FEATURE_CACHE:
            raise ConfigError(f"Feature cache must be auto, on or off, got '{self.feature_cache}'.")
        if self.feature_views < 1:
            raise ConfigError(f"Feature views must be at least 1, got {self.feature_views}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"Schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'.")
        check_runtime(self.runtime)
        if self.weight_decay < 0:
            raise ConfigError(f"Weight decay must be 0 or more, got {self.weight_decay}.")
        if self.train_img_size is not None and not 32 <= self.train_img_size <= 512:
            raise ConfigError(f"The training image size must be between 32 and 512 pixels, got {self.train_img_size}.")
        if not 1 <= self.full_size_epochs <= self.epochs:
            raise ConfigError(
                f"Full-size epochs must be between 1 and the number of epochs ({self.epochs}), "
                f"got {self.full_size_epochs}."
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"The seed must be between 0 and {MAX_SEED:,}, got {self.seed:,}.")
        if self.num_threads is not None and not 1 <= self.num_threads <= MAX_THREADS:
            raise ConfigError(f"Threads must be between 1 and {MAX_THREADS}, got {self.num_threads}.")


def new_group_id() -> str:
    """The id of runs launched together (:attr:`RunConfig.group`): sortable by launch time, to the nanosecond
    (two sessions may launch within the same second)."""
    return f"g-{time.time_ns():020d}-{secrets.token_hex(2)}"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: Optional[str] = None
    note: str = ""
    group: str = ""  # runs launched together (e.g. "Run all four") share a group and race in one chart
    plan: Dict[str, Any] = field(
        default_factory=dict
    )  # a planned race's prediction for this run (core.training.planner)

    def validate(self) -> RunConfig:
        self.data.validate()
        self.model.validate()
        self.train.validate()
        if self.train.train_img_size is not None:
            if self.model.regime == "mlp":
                raise ConfigError(
                    "Progressive resizing changes the input size between epochs; the MLP baseline has one input "
                    "per pixel, so it trains at one size. Leave the training image size unset for 'mlp'."
                )
            if self.train.train_img_size > self.data.img_size:
                raise ConfigError(
                    f"The training image size ({self.train.train_img_size} px) must not exceed the "
                    f"image size ({self.data.img_size} px) it ends at."
                )
            if self.model.regime in ("transfer", "finetune") and self.train.feature_cache != "off":
                raise ConfigError(
                    "Progressive resizing (a smaller training image size) runs the whole network each "
                    "batch; the 'transfer' and 'finetune' regimes cache their frozen layers instead. "
                    "Use it with 'scratch' or 'full', or set the feature cache off."
                )
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> RunConfig:
        def build(kls, values):
            known = {f.name for f in fields(kls)}
            return kls(**{k: v for k, v in (values or {}).items() if k in known})

        train = dict(d.get("train") or {})
        train["augment"] = saved_augment(train)  # saved before the choice existed: read as what the run did
        return cls(
            data=build(DataConfig, d.get("data")),
            model=build(ModelConfig, d.get("model")),
            train=build(TrainConfig, train),
            preset=d.get("preset"),
            note=d.get("note", ""),
            group=d.get("group", ""),
            plan=d.get("plan") or {},
        )


# How a regime trains when nothing else is set: the notebook's settings (the dataclass defaults), except for
# `transfer`: its head trains on cached features in milliseconds an epoch, so it runs to the linear probe's
# optimum (many epochs, a one-cycle schedule, weight decay) instead of stopping after a few at 1e-4
# (BENCHMARKS.md, "transfer trained to convergence").
REGIME_DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "transfer": {"train": {"epochs": 30, "lr": 3e-3, "schedule": "onecycle", "weight_decay": 1e-2}},
}


def regime_defaults(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` with its regime's own defaults applied (see :data:`REGIME_DEFAULTS`)."""
    return _override(cfg, REGIME_DEFAULTS.get(cfg.model.regime, {}))


def _override(cfg: RunConfig, p: Dict[str, Dict[str, Any]], **top) -> RunConfig:
    return replace(
        cfg,
        data=replace(cfg.data, **p.get("data", {})),
        model=replace(cfg.model, **p.get("model", {})),
        train=replace(cfg.train, **p.get("train", {})),
        **top,
    )


# Presets a teacher picks by name. Each maps a section to overrides of that section's defaults.
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    # The course notebook: full dataset, 224 px, Adam at a constant 1e-4, 10 epochs, batch 32, for every regime.
    "notebook recipe": {
        "data": {"img_size": 224, "limit_per_class": None},
        "train": {
            "epochs": 10,
            "batch_size": 32,
            "lr": 1e-4,
            "schedule": "constant",
            "weight_decay": 0.0,
            "train_img_size": None,
        },
    },
}


# Presets that are a time budget rather than settings: the chosen regimes, planned by core.training.planner from this
# machine's measured speed to finish one after another within so many minutes.
BUDGET_PRESETS: Dict[str, float] = {"5 minutes": 5, "quick demo": 2}
PRESET_NAMES = (*BUDGET_PRESETS, *PRESETS)


def preset_configs(
    source: str,
    backbone: str,
    regimes,
    preset: str,
    *,
    epochs: int,
    img_size: int,
    batch_size: int,
    lr: float,
    freeze: Optional[int],
    seed: int,
    group: str = "",
) -> list:
    """One config per regime from a settings preset with the knobs a teacher set on top (the Train page's
    "notebook recipe"); ``freeze`` applies to ``finetune`` only, ``seed`` to the split and the training."""
    configs = []
    for regime in regimes:
        model = ModelConfig(backbone=backbone, regime=regime)
        cfg = apply_preset(RunConfig(data=DataConfig(source=source), model=model), preset)
        cfg.data.img_size, cfg.data.split_seed = img_size, seed
        cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.seed = epochs, batch_size, lr, seed
        cfg.model.freeze = freeze if regime == "finetune" else None
        cfg.group = group
        configs.append(cfg.validate())
    return configs


def apply_preset(cfg: RunConfig, name: str) -> RunConfig:
    """A copy of ``cfg`` with the named (settings) preset's values applied."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset '{name}'. Choose one of: {', '.join(PRESET_NAMES)}.")
    return _override(cfg, PRESETS[name], preset=name)
