"""Augmentation and resizing on batched tensors (no PIL), as a run chooses it (:data:`AUGMENTS`).

* ``off`` — the images as they are: batches are bit-identical to the decoded images.
* ``flip-rotate`` (the default, the course notebook's) — a random horizontal flip and a small random rotation. Each
  image gets its own flip and angle; the rotation is one ``affine_grid``/``grid_sample`` call for the batch.
* ``strong`` — a random resized crop (:data:`CROP_SCALE` of the area, aspect 3:4 to 4:3, back to full size), a
  random horizontal flip and colour jitter (brightness, contrast, saturation by up to ±:data:`JITTER`), with
  ``torchvision.transforms.v2.functional`` image by image. No hue jitter: on flowers colour is a class cue (a
  dandelion is yellow), and hue is the costliest of the jitters.

Parameters are drawn per image from the caller's ``torch.Generator`` (:meth:`Augmentation.draw`), never from
torch's global generator: torchvision's v2 transform *classes* draw one parameter set per call from the global
one, which would give every image of a batch the same crop and make runs in parallel threads depend on each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from core.data.decode import to_float
from core.errors import ConfigError

AUGMENTS = ("off", "flip-rotate", "strong")
AUGMENT_TITLES = {"off": "off", "flip-rotate": "flip + rotate", "strong": "strong: crop + colour jitter"}
CROP_SCALE = (0.35, 1.0)  # share of the image's area a strong crop keeps (torchvision's default 0.08 loses the
# flower on photos this small)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.4  # brightness, contrast and saturation factors drawn in [1 - JITTER, 1 + JITTER]

Params = Dict[str, torch.Tensor]  # per-image parameters, one row an image


def check_augment(name: str) -> str:
    if name not in AUGMENTS:
        raise ConfigError(f"Augmentation must be one of {', '.join(AUGMENTS)}, got '{name}'.")
    return name


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


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """A float batch resized to ``size``×``size`` (antialiased when shrinking), or ``x`` itself if it is."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def strong_params(n: int, height: int, width: int, generator: torch.Generator, hflip: bool = True) -> Params:
    """Per-image crop boxes (``top``, ``left``, ``h``, ``w``), flips and jitter factors for :data:`AUGMENTS`'
    ``strong``: torchvision's RandomResizedCrop sampling (area share, then log-uniform aspect), the box clipped to
    the image instead of redrawn, so every image takes one draw."""
    area = _uniform(n, *CROP_SCALE, generator) * height * width
    ratio = torch.exp(_uniform(n, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator))
    w = torch.sqrt(area * ratio).round().clamp(1, width).long()
    h = torch.sqrt(area / ratio).round().clamp(1, height).long()
    top = (torch.rand(n, generator=generator) * (height - h + 1)).floor().long()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).floor().long()
    flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    jitter = {k: _uniform(n, 1 - JITTER, 1 + JITTER, generator) for k in ("brightness", "contrast", "saturation")}
    return {"top": top, "left": left, "h": h, "w": w, "flip": flip, **jitter}


def apply_strong(x: torch.Tensor, p: Params) -> torch.Tensor:
    """``strong`` on a float batch ``(N, 3, H, W)`` in [0, 1], image by image (v2's functional ops take one set
    of parameters per call); returns a new tensor."""
    from torchvision.transforms.v2 import functional as TF  # noqa: PLC0415 (lazy: only strong runs need it)

    size = list(x.shape[-2:])
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        img = TF.resized_crop(
            x[i], int(p["top"][i]), int(p["left"][i]), int(p["h"][i]), int(p["w"][i]), size, antialias=True
        )
        if p["flip"][i]:
            img = TF.horizontal_flip(img)
        img = TF.adjust_brightness(img, float(p["brightness"][i]))
        img = TF.adjust_contrast(img, float(p["contrast"][i]))
        out[i] = TF.adjust_saturation(img, float(p["saturation"][i]))
    return out


@dataclass(frozen=True)
class Augmentation:
    """A run's augmentation (:data:`AUGMENTS`), drawn (:meth:`draw`) then applied (:meth:`apply`) per image."""

    setting: str = "flip-rotate"
    rotation_degrees: float = 10.0
    hflip: bool = True

    @property
    def active(self) -> bool:
        """Whether it changes images at all (flip-rotate with no flip and no rotation does not)."""
        return self.setting == "strong" or (self.setting == "flip-rotate" and (self.rotation_degrees > 0 or self.hflip))

    @property
    def key(self) -> Tuple:
        return (self.setting, self.rotation_degrees, self.hflip) if self.active else ("off",)

    def describe(self) -> str:
        return AUGMENT_TITLES[self.setting] if self.active else "plain"

    def draw(self, n: int, height: int, width: int, generator: torch.Generator) -> Params:
        """Parameters for ``n`` images of ``height``×``width``; nothing drawn when it is not :attr:`active`."""
        if not self.active:
            return {}
        if self.setting == "strong":
            return strong_params(n, height, width, generator, self.hflip)
        flip, angles = augment_params(n, generator, self.rotation_degrees, self.hflip)
        return {"flip": flip, "angle": angles}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if not params:
            return x
        if self.setting == "strong":
            return apply_strong(x, params)
        return apply_augment(x, params["flip"], params["angle"])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A float batch ``(N, 3, H, W)`` in [0, 1] augmented image by image; ``x`` itself when not active."""
        return self.apply(x, self.draw(x.shape[0], x.shape[-2], x.shape[-1], generator))


def params_slice(params: Params, start: int, stop: int) -> Params:
    return {k: v[start:stop] for k, v in params.items()}


def views_of(images_uint8: torch.Tensor, augmentation: Augmentation, n: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` augmented views of one uint8 image ``(3, H, W)`` as uint8 ``(n, 3, H, W)``: what the network gets
    (the Train page's strip). Seeded, so the strip is the same on every rerun."""
    out = augmentation(to_float(images_uint8.unsqueeze(0).repeat(n, 1, 1, 1)), torch.Generator().manual_seed(seed))
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)
