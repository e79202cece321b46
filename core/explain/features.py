"""What a network's layers hold: its first layer's filters, and one photo's feature maps at three depths.

* :func:`first_layer_filters`: each filter of the first conv (ResNet18's ``conv1``, 64 of 7×7; EfficientNet-Lite's
  ``conv_stem``, 32 of 3×3) drawn as a small RGB tile. ImageNet's are edges and colour blobs; a network trained
  from scratch on a few hundred photos keeps much of its random start: noise.
* :func:`feature_maps`: the photo's activations at the registry's three ``depths`` (early, middle, late), the
  strongest channels first (by mean activation), each map normalised on its own and coloured (viridis).
* :func:`feature_sheet`: both in one picture, for ``python -m core explain``.

Forward hooks are taken under :data:`core.explain.cam.HOOKS_LOCK` and removed after, as Grad-CAM's are.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from core.data.decode import resize_square, to_float
from core.explain.cam import HOOKS_LOCK, private_copy
from core.models.backbones import get_backbone

DEPTH_LABELS = ("early", "middle", "late")
PX_PER_WEIGHT = 8  # a 3×3 filter becomes a 24 px tile: visible
MAP_TILE = 64  # feature maps are drawn at least this big (nearest: the pixels are the network's cells)
GAP = 2  # white pixels between tiles
COLUMNS = 8  # filter tiles a row
MAP_COLUMNS = 4  # feature map tiles a row


class FeatureMaps(NamedTuple):
    depth: str  # "early", "middle" or "late"
    layer: str  # e.g. "body.blocks.1"
    channels: int  # the layer's channel count
    size: int  # the maps' height (and width) in cells
    image: Image.Image  # the strongest channels' maps, strongest first, in a grid
    strongest: Tuple[int, ...]  # their channel indices, strongest first


def _normalise(a: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a constant array becomes zeros)."""
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def grid(tiles: Sequence[np.ndarray], columns: int) -> Image.Image:
    """uint8 ``(h, w, 3)`` tiles of one size in rows of ``columns``, ``GAP`` white pixels between."""
    h, w = tiles[0].shape[:2]
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    out = np.full((rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = tile
    return Image.fromarray(out)


def _upscale(tile: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


def first_layer_filters(model: nn.Module, backbone: str) -> Image.Image:
    """The first conv's filters as RGB tiles, each min-max normalised, ``PX_PER_WEIGHT`` px a weight, in rows of
    ``COLUMNS``."""
    conv = model.body.get_submodule(get_backbone(backbone).first_conv)
    weights = conv.weight.detach().float().cpu().numpy()  # (out, 3, k, k)
    tiles = [_upscale((_normalise(w.transpose(1, 2, 0)) * 255).astype(np.uint8), PX_PER_WEIGHT) for w in weights]
    return grid(tiles, COLUMNS)


def _colour(a: np.ndarray, px: int) -> np.ndarray:
    """One feature map (h, w) as a viridis uint8 RGB tile, scaled up by a whole factor to at least ``px``."""
    u8 = (_normalise(a) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    return _upscale(rgb, max(1, math.ceil(px / a.shape[0])))


@torch.inference_mode()
def activations(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> List[torch.Tensor]:
    """The outputs of ``model.body``'s modules ``names`` for ``x``, with forward hooks removed after."""
    got = {}
    handles = []
    model = private_copy(model)  # hooked: not the shared one

    def keep(name: str):
        def hook(module, inputs, output) -> None:  # returning anything would replace the output
            got[name] = output.detach().float().cpu()

        return hook

    with HOOKS_LOCK:
        was_training = model.training
        try:
            handles = [model.body.get_submodule(n).register_forward_hook(keep(n)) for n in names]
            model.eval()(x.to(next(model.parameters()).device, torch.float32))
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
    return [got[n] for n in names]


def feature_maps(
    model: nn.Module, backbone: str, photo: Image.Image, img_size: int, per_depth: int = 8
) -> List[FeatureMaps]:
    """``photo``'s feature maps at the backbone's early, middle and late depths, resized to ``img_size`` as the
    run predicts it: the ``per_depth`` strongest channels (highest mean activation) of each, strongest first."""
    names = get_backbone(backbone).depths
    x = to_float(torch.from_numpy(resize_square(photo, img_size)).permute(2, 0, 1).unsqueeze(0))
    out = []
    for label, name, act in zip(DEPTH_LABELS, names, activations(model, x, names)):
        maps = act[0]  # (C, h, w)
        order = maps.mean(dim=(1, 2)).argsort(descending=True)[:per_depth].tolist()
        tiles = [_colour(maps[c].numpy(), MAP_TILE) for c in order]
        out.append(
            FeatureMaps(label, f"body.{name}", maps.shape[0], maps.shape[1], grid(tiles, MAP_COLUMNS), tuple(order))
        )
    return out


def _captioned(image: Image.Image, caption: str) -> Image.Image:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    box = draw.textbbox((0, 0), caption)
    out = Image.new("RGB", (max(image.width, box[2] + 4), image.height + box[3] + 6), "white")
    ImageDraw.Draw(out).text((2, 2), caption, fill="black")
    out.paste(image, (0, box[3] + 6))
    return out


def feature_sheet(
    model: nn.Module, backbone: str, photo: Image.Image, img_size: int, per_depth: int = 8
) -> Image.Image:
    """One picture: the first layer's filters, then the photo's feature maps at the three depths, captioned."""
    spec = get_backbone(backbone)
    filters = first_layer_filters(model, backbone)
    n = model.body.get_submodule(spec.first_conv).out_channels
    parts = [_captioned(filters, f"first-layer filters: body.{spec.first_conv}, {n} filters")]
    for fm in feature_maps(model, backbone, photo, img_size, per_depth):
        parts.append(
            _captioned(
                fm.image,
                f"{fm.depth}: {fm.layer}, {fm.channels} channels of {fm.size}x{fm.size}, the {len(fm.strongest)} "
                f"strongest (photo at {img_size} px)",
            )
        )
    sheet = Image.new("RGB", (max(p.width for p in parts) + 16, sum(p.height + 12 for p in parts) + 4), "white")
    y = 8
    for p in parts:
        sheet.paste(p, (8, y))
        y += p.height + 12
    return sheet
