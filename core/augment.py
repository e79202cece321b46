"""Augmentation and normalisation on batched tensors (no PIL, no per-image Python loop).

As in the course notebook: random horizontal flip and a small random rotation. Each image in the batch
gets its own flip and angle; the rotation is one ``affine_grid``/``grid_sample`` call for the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` in [0, 255] to float32 in [0, 1]."""
    return x_uint8.float().div_(255.0)


def augment(x: torch.Tensor, generator: torch.Generator, rotation_degrees: float = 10.0,
            hflip: bool = True) -> torch.Tensor:
    """Randomly flip and rotate a float batch ``(N, 3, H, W)`` in [0, 1]; returns a new tensor.

    Rotation fills the corners by reflection, so no black wedges appear.
    """
    n = x.shape[0]
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        if flip.any():
            x = x.clone()
            x[flip] = x[flip].flip(-1)
    if rotation_degrees > 0:
        angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotation_degrees)
        cos, sin = torch.cos(angles), torch.sin(angles)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x
