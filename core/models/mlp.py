"""The MLP baseline: a multilayer perceptron on the flattened image, trained from scratch.

It is what a network without convolutions makes of the same photos: every pixel of every channel is one input, and
nothing tells it that neighbouring pixels belong together or that a flower is a flower wherever it stands. Set beside
``scratch`` (a CNN from random weights on the same images) it shows what convolutions buy.

It is built as a :class:`~core.models.classifier.Classifier`, so the engine, the run store, evaluation and Compare
handle it as any other model: ``body`` = flatten + the hidden ``Linear``/``ReLU`` layers, ``head`` = the last
``Linear``. Each hidden layer is one stage (the flatten inside the first), so no stage is parameter-free and the
regime cut leaves nothing to cache.

Hidden sizes (:data:`HIDDEN`): the first layer holds almost every parameter, ``3·S²`` inputs times its width. At
224 px that is 150,528 inputs; 256 units make 38.5 M parameters, 3.4× ResNet18's 11.2 M (about 154 MB of fp32
weights, ~0.6 GB with their gradients and Adam's two moments: fine on an 8 GB laptop), while 512 units would double
that for no accuracy an MLP can use on a few thousand photos. At 64 px it is 3.2 M. A second, narrower layer keeps
it a *multi*layer perceptron at little cost.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence, Tuple

from torch import nn

from core.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from core.models.classifier import Classifier, Stages

HIDDEN: Tuple[int, ...] = (256, 128)


def _mlp_stages(body: nn.Module) -> Stages:
    return list(body.named_children())


def create_mlp(num_classes: int, img_size: int, hidden: Sequence[int] = HIDDEN) -> Classifier:
    """The baseline for ``img_size``×``img_size`` RGB images, random weights (PyTorch's default init)."""
    layers, width = OrderedDict(), 3 * img_size * img_size
    for i, h in enumerate(hidden, 1):
        parts = [nn.Flatten(1)] if i == 1 else []
        layers[f"fc{i}"] = nn.Sequential(*parts, nn.Linear(width, h), nn.ReLU(inplace=True))
        width = h
    return Classifier(nn.Sequential(layers), nn.Linear(width, num_classes), IMAGENET_MEAN, IMAGENET_STD, _mlp_stages)
