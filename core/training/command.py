"""A run's config as a ``python -m core train`` command line, and that command's flags as a config.

:data:`TRAIN_FLAGS` is the one table of which ``train`` flag sets which :class:`RunConfig` field: the parser
(:mod:`core.cli.training`) reads its flags through :func:`config_from_flags`, and :func:`reproduce_command`
writes them. A reproduce command is checked as it is made: the config its flags give is compared with the run's,
field by field, and whatever it cannot set (a field without a flag, such as the augmentation's rotation, or one a
newer version wrote) is said in a comment under it — a command never silently trains something else.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, fields
from typing import Any, Dict, List, Mapping, Optional

from core.errors import ConfigError
from core.training.config import PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig, apply_preset, regime_defaults

# RunConfig field -> the `train` flag that sets it (the argparse dest is the flag without dashes, "_" for "-").
# --data, --backbone, --regime and --preset are the command's own arguments (see config_from_flags).
TRAIN_FLAGS = {
    "data.img_size": "--img-size",
    "data.limit_per_class": "--limit-per-class",
    "data.split_seed": "--split-seed",
    "data.val_fraction": "--val-fraction",
    "data.test_fraction": "--test-fraction",
    "model.freeze": "--freeze",
    "train.epochs": "--epochs",
    "train.batch_size": "--batch-size",
    "train.lr": "--lr",
    "train.weight_decay": "--weight-decay",
    "train.schedule": "--schedule",
    "train.seed": "--seed",
    "train.augment": "--augment",
    "train.precision": "--precision",
    "train.feature_cache": "--feature-cache",
    "train.feature_views": "--feature-views",
    "train.num_threads": "--threads",
    "train.runtime": "--runtime",
    "train.train_img_size": "--train-img-size",
    "train.full_size_epochs": "--full-size-epochs",
}
# Written in every reproduce command, even at their defaults: the recipe a reader looks for (and defaults change).
ALWAYS_WRITTEN = ("train.epochs", "data.img_size", "train.batch_size", "train.lr", "train.seed")
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def dest(flag: str) -> str:
    """The argparse attribute of ``flag``: ``--img-size`` -> ``img_size``."""
    return flag.lstrip("-").replace("-", "_")


def base_config(source: str, backbone: str, regime: str, preset: Optional[str] = None) -> RunConfig:
    """What ``train`` starts from before its flags: the settings preset's values, or the regime's defaults."""
    cfg = RunConfig(data=DataConfig(source=source), model=ModelConfig(backbone=backbone, regime=regime))
    return apply_preset(cfg, preset) if preset else regime_defaults(cfg)


def config_from_flags(cfg: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """``cfg`` with the flags' ``values`` (keyed by the field of :data:`TRAIN_FLAGS`; None: not given) set on it,
    validated. ``--seed`` without ``--split-seed`` seeds the split too (one seed for a run, as on the Train page)."""
    for field, value in values.items():
        if value is not None:
            section, attr = field.split(".")
            setattr(getattr(cfg, section), attr, value)
    if values.get("train.seed") is not None and values.get("data.split_seed") is None:
        cfg.data.split_seed = values["train.seed"]
    return cfg.validate()


def _value(cfg: RunConfig, field: str) -> Any:
    section, attr = field.split(".")
    return getattr(getattr(cfg, section), attr)


def _flat(cfg: RunConfig) -> Dict[str, Any]:
    return {f"{s}.{k}": v for s in SECTIONS for k, v in asdict(getattr(cfg, s)).items()}


def _word(value: Any) -> str:
    return repr(value) if isinstance(value, float) else shlex.quote(str(value))  # repr: a float that parses back


def reproduce_command(config: Dict[str, Any]) -> str:
    """The ``python -m core train ...`` command that trains ``config`` (a run's ``config.json``) again: the same
    data, split, model and training settings. Flags are written for the recipe (:data:`ALWAYS_WRITTEN`) and for
    every other field that differs from what ``train`` would otherwise use. A race planned to a time budget
    gets its plan's settings as flags (planning again on another machine would choose others). Below the command,
    ``#`` comment lines say what it cannot reproduce, if anything."""
    cfg = RunConfig.from_dict(config)
    preset = cfg.preset if cfg.preset in PRESETS else None
    args: List[tuple] = [("--data", cfg.data.source), ("--regime", cfg.model.regime)]
    args += [("--backbone", cfg.model.backbone)] + ([("--preset", preset)] if preset else [])
    notes: List[str] = []
    values = {f: _value(cfg, f) for f in ALWAYS_WRITTEN}
    try:
        made = config_from_flags(base_config(cfg.data.source, cfg.model.backbone, cfg.model.regime, preset), values)
        for field in TRAIN_FLAGS:
            if _value(made, field) != _value(cfg, field) and _value(cfg, field) is not None:
                values[field] = _value(cfg, field)
        made = config_from_flags(base_config(cfg.data.source, cfg.model.backbone, cfg.model.regime, preset), values)
        theirs = _flat(made)
        notes += [f"{k} = {v!r} (this command gives {theirs[k]!r})" for k, v in _flat(cfg).items() if theirs[k] != v]
    except ConfigError as e:
        notes.append(f"this config is not valid in this version of Transfer Lab: {e}")
    for section, kls in SECTIONS.items():  # written by another version: RunConfig.from_dict leaves them out
        known = {f.name for f in fields(kls)}
        notes += [f"{section}.{k} = {v!r} (unknown to this version)" for k, v in config.get(section, {}).items()
                  if k not in known]  # fmt: skip
    args += [(flag, values[field]) for field, flag in TRAIN_FLAGS.items() if values.get(field) is not None]
    command = "python -m core train " + " ".join(f"{flag} {_word(value)}" for flag, value in args)
    if cfg.preset and not preset:
        command += f"\n# planned by the {cfg.preset!r} preset on the machine it ran on; these flags are that plan"
    if notes:
        command += "\n# not reproduced by this command: " + "; ".join(notes)
    return command
