"""The four training regimes of the course notebook: what is initialised how, and what is trained.

| regime     | init     | trainable                                                        |
|------------|----------|------------------------------------------------------------------|
| scratch    | random   | everything                                                       |
| transfer   | ImageNet | the new classification head only                                 |
| finetune   | ImageNet | all but the first N parameter tensors (backbone's default N)     |
| full       | ImageNet | everything                                                       |

Beside them, :data:`BASELINES`: models that are not a regime of the race but an optional extra in it ("add
baselines"): ``mlp``, a multilayer perceptron on the flattened image (:mod:`core.models.mlp`), from scratch. They are
known to :func:`get_regime` and :func:`display_name`, never to :data:`REGIMES`, which stays the four everywhere
("Run all four", the planner, the CLI's ``race``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from core.errors import ConfigError
from core.models.backbones import create_model, get_backbone

if TYPE_CHECKING:  # torch is imported where a model is cut: REGIMES and display_name() are read without it
    from torch import nn

    from core.models.classifier import Classifier


@dataclass(frozen=True)
class Regime:
    name: str
    title: str
    pretrained: bool
    explanation: str  # one line, plain language, shown to students
    baseline: bool = False  # an extra beside the race (BASELINES), not one of the four regimes


REGIMES: Dict[str, Regime] = {
    "scratch": Regime(
        "scratch",
        "From scratch",
        False,
        "Random weights, every layer trained: the network must learn to see from our photos alone.",
    ),
    "transfer": Regime(
        "transfer",
        "Transfer learning",
        True,
        "ImageNet features kept frozen; only a new final layer learns our five classes.",
    ),
    "finetune": Regime(
        "finetune",
        "Fine-tune (first N frozen)",
        True,
        "Start from ImageNet, freeze the first N layers' weights, adapt the deeper ones.",
    ),
    "full": Regime(
        "full", "Fine-tune everything", True, "Start from ImageNet and let every weight adapt to our photos."
    ),
}


# Not regimes of the race: extras a launch may add. Their model is their own, whatever the launch's backbone.
BASELINES: Dict[str, Regime] = {
    "mlp": Regime(
        "mlp",
        "MLP baseline",
        False,
        "No convolutions: every pixel is one input of a multilayer perceptron, trained from random weights.",
        baseline=True,
    ),
}
KNOWN: Dict[str, Regime] = {**REGIMES, **BASELINES}  # every name a run's config may hold


def is_baseline(regime: str) -> bool:
    return regime in BASELINES


def model_name(regime: str, backbone: str) -> str:
    """What network a run trained, as tables and legends name it: the backbone, or "mlp" for the MLP baseline
    (whose config keeps the launch's backbone, which it does not use)."""
    return regime if is_baseline(regime) else backbone


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    frozen: int
    trainable_tensors: int
    frozen_tensors: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


def display_name(regime: str, with_cli: bool = False) -> str:
    """The one name a regime goes by on every page, table and legend ("Fine-tune everything"); ``with_cli`` adds
    the CLI's short name in brackets ("Fine-tune everything (full)"). Unknown names come back as they are."""
    if regime not in KNOWN:
        return str(regime)
    return f"{KNOWN[regime].title} ({regime})" if with_cli else KNOWN[regime].title


def get_regime(name: str) -> Regime:
    if name not in KNOWN:
        raise ConfigError(f"Unknown regime '{name}'. Choose one of: {', '.join(KNOWN)}.")
    return KNOWN[name]


def create_run_model(
    regime: str, backbone: str, num_classes: int, img_size: int, settings=None, pretrained: Optional[bool] = None
) -> Tuple[Classifier, str]:
    """The model a run of ``regime`` trains (the MLP for ``mlp``, else ``backbone`` with a new head), and where its
    weights came from. ``pretrained`` defaults to the regime's; False builds the architecture only (to load a
    checkpoint into)."""
    pretrained = get_regime(regime).pretrained if pretrained is None else pretrained
    if regime == "mlp":
        from core.models.mlp import create_mlp  # noqa: PLC0415 (lazy, as torch: it defines an nn.Module)

        return create_mlp(num_classes, img_size), "random init"
    return create_model(backbone, num_classes, pretrained, settings)


def mlp_param_count(img_size: int, num_classes: int = 5) -> int:
    """The MLP baseline's parameter count at ``img_size`` px, from its layer sizes (no model built: at 224 px it
    is ~150 MB of weights)."""
    from core.models.mlp import HIDDEN  # noqa: PLC0415 (lazy, as torch)

    widths = [3 * img_size * img_size, *HIDDEN, num_classes]
    return sum(i * o + o for i, o in zip(widths, widths[1:]))


def frozen_tensor_count(model: Classifier, regime: str, backbone: str, freeze: Optional[int] = None) -> int:
    """How many leading parameter tensors the regime freezes."""
    n_total = len(list(model.parameters()))
    n_head = len(list(model.head.parameters()))
    get_regime(regime)
    if regime in ("scratch", "full", "mlp"):
        return 0
    if regime == "transfer":
        return n_total - n_head
    n = get_backbone(backbone).notebook_freeze if freeze is None else freeze
    if not 0 <= n <= n_total - n_head:
        raise ConfigError(
            f"--freeze must be between 0 and {n_total - n_head} for {backbone} "
            f"(it has {n_total} parameter tensors, the last {n_head} are the new head), got {n}."
        )
    return n


@dataclass
class RegimeSplit:
    """What a regime makes of a model, in one description the engine consumes.

    The model's stages (see :meth:`Classifier.stages`) are cut before the first one holding a trainable
    parameter: the **prefix** before the cut is entirely frozen and runs in inference mode, so its output
    for an image never changes and can be computed once (:attr:`caches`); the **suffix** after it trains.
    ``transfer`` cuts just before the head, ``finetune`` at the last block boundary before its first
    trainable tensor (frozen tensors after that boundary run each batch, without gradients), ``scratch``
    and ``full`` after the input normalisation (nothing to cache).
    """

    regime: str
    counts: ParamCounts
    stage_names: Tuple[str, ...]
    cut: int  # stages [0, cut) are the prefix
    prefix: nn.Sequential
    suffix: nn.Sequential
    model: nn.Module  # the model both are cut from (they share its modules)

    @property
    def caches(self) -> bool:
        """Whether the prefix holds more than the input normalisation, i.e. work worth computing once."""
        return self.cut > 1

    @property
    def cache_point(self) -> str:
        """The stage whose output is cached ("normalize" when nothing is worth caching)."""
        return self.stage_names[self.cut - 1]

    def train_mode(self) -> None:
        """``train()`` for the suffix, except that frozen parts run as in inference: the prefix, and every
        BatchNorm of the suffix whose parameters are all frozen (its running statistics stay ImageNet's)."""
        self.model.eval()
        self.prefix.eval()
        self.suffix.train()
        from torch import nn  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads REGIMES without it)

        for m in self.suffix.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                ps = list(m.parameters(recurse=False))
                if ps and not any(p.requires_grad for p in ps):
                    m.eval()

    def eval_mode(self) -> None:
        for m in (self.model, self.prefix, self.suffix):
            m.eval()


def apply_regime(model: Classifier, regime: str, backbone: str, freeze: Optional[int] = None) -> RegimeSplit:
    """Set ``requires_grad`` as the regime says, and cut the model into its frozen prefix and trainable suffix."""
    from torch import nn  # noqa: PLC0415 (lazy: torch takes seconds to import; the app reads REGIMES without it)

    n_frozen = frozen_tensor_count(model, regime, backbone, freeze)
    for i, p in enumerate(model.parameters()):
        p.requires_grad_(i >= n_frozen)
    stages = model.stages()
    cut = next(i for i, (_, m) in enumerate(stages) if any(p.requires_grad for p in m.parameters()))
    return RegimeSplit(
        regime=regime,
        counts=count_params(model),
        stage_names=tuple(n for n, _ in stages),
        cut=cut,
        prefix=nn.Sequential(*[m for _, m in stages[:cut]]),
        suffix=nn.Sequential(*[m for _, m in stages[cut:]]),
        model=model,
    )


def count_params(model: nn.Module) -> ParamCounts:
    params = list(model.parameters())
    tr = [p for p in params if p.requires_grad]
    fr = [p for p in params if not p.requires_grad]
    return ParamCounts(
        trainable=sum(p.numel() for p in tr),
        frozen=sum(p.numel() for p in fr),
        trainable_tensors=len(tr),
        frozen_tensors=len(fr),
    )


def describe_regimes(backbone: str, num_classes: int = 5, freeze: Optional[int] = None) -> Dict[str, ParamCounts]:
    """Trainable/frozen counts of every regime for ``backbone``, without loading any weights (for the UI)."""
    out = {}
    for name in REGIMES:
        model, _ = create_model(backbone, num_classes, pretrained=False)
        out[name] = apply_regime(model, name, backbone, freeze if name == "finetune" else None).counts
    return out
