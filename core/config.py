"""Run configuration: one dataclass per concern, saved with every run as ``config.json``.

Defaults follow the course notebook (Adam, lr 1e-4, cross-entropy, 224 px, 80/10/10 split, best
checkpoint by validation loss). :data:`PRESETS` holds the settings a teacher picks by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, Optional

from core.errors import ConfigError

REGIMES = ("scratch", "transfer", "finetune", "full")


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
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5
                and self.val_fraction + self.test_fraction < 0.9):
            raise ConfigError("Validation and test fractions must each be in (0, 0.5) and leave room for training.")
        if self.limit_per_class is not None and self.limit_per_class < 3:
            raise ConfigError(f"--limit-per-class must be at least 3 (one image each for train/val/test), "
                              f"got {self.limit_per_class}.")


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    regime: str = "transfer"
    freeze: Optional[int] = None  # finetune: number of leading parameter tensors frozen (None = backbone default)

    def validate(self) -> None:
        from core.backbones import BACKBONES  # local import: backbones imports torch

        if self.regime not in REGIMES:
            raise ConfigError(f"Unknown regime '{self.regime}'. Choose one of: {', '.join(REGIMES)}.")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"Unknown backbone '{self.backbone}'. Choose one of: {', '.join(BACKBONES)}.")
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
    rotation_degrees: float = 10.0  # augmentation, as in the notebook: flip + small rotation
    hflip: bool = True
    precision: str = "auto"  # "auto" (bf16 on CPUs with native bf16, else fp32), "fp32", "bf16"
    channels_last: bool = True
    feature_cache: str = "auto"  # "auto" (on when the backbone is frozen), "on", "off"
    feature_views: int = 2  # augmented views of the training set whose features are cached (epochs cycle them)
    num_threads: Optional[int] = None  # torch threads (None = all cores)
    device: str = "auto"  # "auto" (cuda, mps, cpu), or a torch device string

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"Epochs must be at least 1, got {self.epochs}.")
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"Batch size must be between 1 and 1024, got {self.batch_size}.")
        if not 0 < self.lr < 1:
            raise ConfigError(f"Learning rate must be between 0 and 1, got {self.lr}.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"Precision must be auto, fp32 or bf16, got '{self.precision}'.")
        if self.feature_cache not in ("auto", "on", "off"):
            raise ConfigError(f"Feature cache must be auto, on or off, got '{self.feature_cache}'.")
        if self.feature_views < 1:
            raise ConfigError(f"Feature views must be at least 1, got {self.feature_views}.")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: Optional[str] = None
    note: str = ""
    group: str = ""  # runs launched together (e.g. "Run all four") share a group and race in one chart

    def validate(self) -> "RunConfig":
        self.data.validate()
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        def build(kls, values):
            known = {f.name for f in fields(kls)}
            return kls(**{k: v for k, v in (values or {}).items() if k in known})

        return cls(
            data=build(DataConfig, d.get("data")),
            model=build(ModelConfig, d.get("model")),
            train=build(TrainConfig, d.get("train")),
            preset=d.get("preset"),
            note=d.get("note", ""),
            group=d.get("group", ""),
        )


# Presets a teacher picks by name. Each maps a section to overrides of that section's defaults.
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    # A few minutes per regime on a 2-core laptop CPU: small images, a subset, few epochs, a larger lr.
    "quick demo": {
        "data": {"img_size": 128, "limit_per_class": 200},
        "train": {"epochs": 4, "batch_size": 32, "lr": 5e-4},
    },
    # The course notebook: full dataset, 224 px, Adam at 1e-4, 10 epochs, batch 32.
    "notebook recipe": {
        "data": {"img_size": 224, "limit_per_class": None},
        "train": {"epochs": 10, "batch_size": 32, "lr": 1e-4},
    },
}


def apply_preset(cfg: RunConfig, name: str) -> RunConfig:
    """A copy of ``cfg`` with the named preset's values applied."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset '{name}'. Choose one of: {', '.join(PRESETS)}.")
    p = PRESETS[name]
    return replace(
        cfg,
        data=replace(cfg.data, **p.get("data", {})),
        model=replace(cfg.model, **p.get("model", {})),
        train=replace(cfg.train, **p.get("train", {})),
        preset=name,
    )
