"""Augmentation, resizing and normalisation on batched tensors (no PIL, no per-image Python loop).

As in the course notebook: random horizontal flip and a small random rotation. Each image in the batch
gets its own flip and angle; the rotation is one ``affine_grid``/``grid_sample`` call for the batch.
(torchvision's v2 transforms draw one set of parameters per call, i.e. per batch, hence this module.)
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F


def augment_params(
    n: int, generator: torch.Generator, rotation_degrees: float = 10.0, hflip: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(flip, angle in radians)`` for ``n`` images."""
    flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    angles = (
        (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotation_degrees)
        if rotation_degrees > 0
        else torch.zeros(n)
    )
    return flip, angles


def apply_augment(x: torch.Tensor, flip: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Flip and rotate a float batch ``(N, 3, H, W)`` image by image; returns a new tensor.

    Rotation fills the corners by reflection, so no black wedges appear.
    """
    if flip.any():
        x = x.clone()
        x[flip] = x[flip].flip(-1)
    if bool((angles != 0).any()):
        cos, sin = torch.cos(angles), torch.sin(angles)
        theta = torch.zeros(len(angles), 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x


def augment(
    x: torch.Tensor, generator: torch.Generator, rotation_degrees: float = 10.0, hflip: bool = True
) -> torch.Tensor:
    """Randomly flip and rotate a float batch ``(N, 3, H, W)`` in [0, 1]; returns a new tensor."""
    return apply_augment(x, *augment_params(x.shape[0], generator, rotation_degrees, hflip))


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """A float batch resized to ``size``×``size`` (antialiased when shrinking), or ``x`` itself if it is."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
