"""The classifier wrapper every model Transfer Lab trains: input normalisation, a ``body`` and a new ``head``.

Apart from :mod:`core.models.backbones` (its registry, which the app's sidebar reads, must load without torch),
because defining an ``nn.Module`` needs torch. See that module for what the parts are.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch
from torch import nn

Stages = List[Tuple[str, nn.Module]]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for float images in [0, 1]. Its buffers are not saved in checkpoints."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``head(body(normalize(x)))`` for float images in [0, 1], also usable stage by stage."""

    def __init__(self, body: nn.Module, head: nn.Linear, mean, std, body_stages: Callable[[nn.Module], Stages]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.head = head
        self._body_stages = body_stages

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def stages(self) -> Stages:
        """``[(name, module), ...]`` in forward order; applying them one after another is :meth:`forward`.
        Names are paths inside the classifier (``body.layer3.1``), so parameters map to their stage by prefix."""
        body = [(f"body.{name}", module) for name, module in self._body_stages(self.body)]
        return [("normalize", self.normalize), *body, ("head", self.head)]
