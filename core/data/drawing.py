"""Drawing the built-in sample's "flowers": five classes told apart by shape, with Pillow and numpy only.

* **daisy**      - white/cream elongated petals around a small yellow disc (a few pale pink/lilac ones);
* **dandelion**  - a fluffy round head of many thin yellow rays, or a white see-through seed ball;
* **roses**      - layered concentric petals rolling into a spiral centre, red/pink/white/peach;
* **sunflowers** - pointed yellow/orange petals around a large dark-brown seeded disc;
* **tulips**     - a closed cup/goblet of pointed petals on a stem with long leaves, side view.

Shape identifies the class; colour helps but overlaps (yellow tulips vs sunflowers vs dandelions,
red/pink tulips vs roses, white roses vs daisies vs seed balls). Every image varies position, scale,
rotation, tilt, petal count, colour, background (foliage, grass, sky, soil, blurred blobs), sometimes a
blurred companion flower or an occluding leaf, and ends with slight blur, colour cast and gaussian noise.
Shapes are drawn at 2x and downsampled with LANCZOS so thumbnails look clean. :func:`render_flower` draws
one image from a numpy generator; :mod:`core.data.sample` writes and caches the dataset.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.data.flowers import FLOWER_CLASSES
from core.errors import ConfigError

MIN_SIZE = 16
_SUPERSAMPLE = 2

RGB = Tuple[int, int, int]
Points = List[Tuple[float, float]]


# ----------------------------------------------------------------------------------------------- colours


def _clip(v: float) -> int:
    return int(min(255, max(0, round(v))))


def _jit(rng: np.random.Generator, rgb: Sequence[float], amount: float = 12.0) -> RGB:
    """``rgb`` with independent gaussian jitter per channel."""
    return tuple(_clip(c + rng.normal(0.0, amount)) for c in rgb)  # type: ignore[return-value]


def _shade(rgb: Sequence[float], f: float) -> RGB:
    """Darker (f < 1) or lighter towards white (f > 1)."""
    if f <= 1.0:
        return tuple(_clip(c * f) for c in rgb)  # type: ignore[return-value]
    t = min(1.0, f - 1.0)
    return tuple(_clip(c + (255 - c) * t) for c in rgb)  # type: ignore[return-value]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(_clip(x * (1 - t) + y * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _pick(rng: np.random.Generator, options: Sequence[Tuple[float, RGB]]) -> RGB:
    """One colour from ``(weight, rgb)`` options."""
    w = np.array([o[0] for o in options], dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))][1]


def _rgba(rgb: Sequence[int], a: int) -> Tuple[int, int, int, int]:
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]), int(a))


# ------------------------------------------------------------------------------------------- geometry


class _Pose:
    """Maps flower-local coordinates (unit = flower radius, +y = down) into the image: tilt, rotate, move."""

    def __init__(self, cx: float, cy: float, r: float, rot: float, squash: float = 1.0) -> None:
        self.cx, self.cy, self.r, self.squash = cx, cy, r, squash
        self.c, self.s = math.cos(rot), math.sin(rot)

    def pts(self, local: np.ndarray) -> Points:
        x = local[:, 0] * self.r
        y = local[:, 1] * self.r * self.squash
        X = self.cx + self.c * x - self.s * y
        Y = self.cy + self.s * x + self.c * y
        return list(zip(X.tolist(), Y.tolist()))

    def pt(self, x: float, y: float) -> Tuple[float, float]:
        return self.pts(np.array([[x, y]], dtype=float))[0]


_PROFILES: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # half-width along the axis, u = 0 at the base, 1 at the tip; max about 1
    "ellipse": lambda u: 2.0 * np.sqrt(np.clip(u * (1.0 - u), 0.0, None)),
    "pointed": lambda u: np.sqrt(u) * (1.0 - u) / 0.385,  # round base, pointed tip (leaf, tulip petal)
    "lance": lambda u: np.sin(np.pi * u) ** 0.8,  # pointed at both ends (sunflower petal)
    "spoon": lambda u: np.sqrt(np.clip(u, 0, None)) * np.sqrt(np.clip(1.0 - u, 0, None)) ** 0.6 * 1.6,
}


def _leaf(
    p0: Tuple[float, float],
    p1: Tuple[float, float],
    width: float,
    profile: str = "ellipse",
    bend: float = 0.0,
    n: int = 14,
) -> np.ndarray:
    """Outline of a petal/leaf from ``p0`` to ``p1`` (local coords); ``width`` = max half-width."""
    u = np.linspace(0.0, 1.0, n)
    hw = width * _PROFILES[profile](u)
    ax = np.array(p1, dtype=float) - np.array(p0, dtype=float)
    length = float(np.hypot(*ax)) or 1e-6
    d = ax / length
    nrm = np.array([-d[1], d[0]])
    mid = np.array(p0, dtype=float)[None, :] + u[:, None] * ax[None, :]
    mid = mid + (bend * length * np.sin(np.pi * u))[:, None] * nrm[None, :]
    left = mid + hw[:, None] * nrm[None, :]
    right = mid - hw[:, None] * nrm[None, :]
    return np.concatenate([left, right[::-1]], axis=0)


def _radial(r0: float, r1: float, angle: float, width: float, profile: str, bend: float = 0.0) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return _leaf((r0 * c, r0 * s), (r1 * c, r1 * s), width, profile, bend)


def _circle(cx: float, cy: float, rad: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], axis=1)


def _lw(W: int, k: float) -> int:
    """A line width of ``k`` pixels at 256 px (drawing resolution), scaled to ``W``."""
    return max(1, int(round(k * W / 256.0)))


# ----------------------------------------------------------------------------------------- backgrounds

_GREENS: Sequence[Tuple[float, RGB]] = (
    (3, (60, 110, 40)),
    (2, (90, 140, 50)),
    (2, (35, 80, 35)),
    (1, (120, 150, 60)),
    (1, (50, 100, 70)),
)


def _blobs(rng: np.random.Generator, W: int, base: RGB, colours: Sequence[RGB], n: int, blur: float) -> Image.Image:
    """Soft random ellipses: drawn small, upscaled and blurred (cheap out-of-focus texture)."""
    w = max(8, W // 4)
    im = Image.new("RGB", (w, w), base)
    d = ImageDraw.Draw(im, "RGBA")
    for _ in range(n):
        c = colours[int(rng.integers(len(colours)))]
        x, y = rng.uniform(-0.1, 1.1, 2) * w
        rx, ry = rng.uniform(0.05, 0.3, 2) * w
        d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=_rgba(_jit(rng, c, 15), int(rng.integers(90, 230))))
    im = im.resize((W, W), Image.BILINEAR)
    return im.filter(ImageFilter.GaussianBlur(blur * W / 256.0))


def _gradient(W: int, top: RGB, bottom: RGB) -> Image.Image:
    t = np.linspace(0.0, 1.0, W, dtype=np.float32)[:, None, None]
    a = np.array(top, np.float32)[None, None, :]
    b = np.array(bottom, np.float32)[None, None, :]
    arr = np.broadcast_to(a * (1 - t) + b * t, (W, W, 3))
    return Image.fromarray(np.ascontiguousarray(arr).astype(np.uint8), "RGB")


def _grass(rng: np.random.Generator, im: Image.Image, top: float, n: int) -> None:
    """Blades of grass over the lower part of ``im`` from height ``top`` (fraction) down."""
    W = im.size[0]
    d = ImageDraw.Draw(im, "RGBA")
    for _ in range(n):
        x = rng.uniform(0, W)
        y0 = W * 1.02
        h = rng.uniform(0.1, 0.45) * W
        y1 = max(top * W, y0 - h)
        lean = rng.normal(0, 0.25) * (y0 - y1)
        c = _jit(rng, _pick(rng, _GREENS), 18)
        d.line(
            [(x, y0), (x + lean * 0.4, (y0 + y1) / 2), (x + lean, y1)],
            fill=_rgba(c, 220),
            width=_lw(W, rng.uniform(1.5, 4)),
        )


def _background(rng: np.random.Generator, W: int) -> Image.Image:
    kind = int(rng.choice(5, p=[0.3, 0.2, 0.2, 0.15, 0.15]))
    if kind == 0:  # foliage
        base = _jit(rng, _pick(rng, _GREENS), 10)
        cols = [_jit(rng, _pick(rng, _GREENS), 20) for _ in range(5)] + [_shade(base, 0.5), _shade(base, 1.3)]
        return _blobs(rng, W, base, cols, int(rng.integers(18, 35)), rng.uniform(4, 10))
    if kind == 1:  # sky, sometimes with clouds and grass
        top = _jit(rng, (70, 130, 200), 15)
        im = _gradient(W, top, _shade(top, 1.0 + rng.uniform(0.3, 0.6)))
        if rng.random() < 0.6:
            cloud = _blobs(rng, W, (0, 0, 0), [(250, 250, 250)], int(rng.integers(3, 8)), 12)
            mask = cloud.convert("L").point(lambda v: int(v * 0.8))
            im.paste((245, 247, 250), (0, 0), mask)
        if rng.random() < 0.6:
            _grass(rng, im, rng.uniform(0.55, 0.8), int(rng.integers(60, 120)))
        return im
    if kind == 2:  # soil with pebbles
        base = _jit(rng, (110, 80, 55), 15)
        cols = [_shade(base, 0.6), _shade(base, 0.8), _shade(base, 1.2), _jit(rng, (140, 120, 100), 10)]
        im = _blobs(rng, W, base, cols, 25, rng.uniform(2, 5))
        d = ImageDraw.Draw(im, "RGBA")
        for _ in range(int(rng.integers(10, 40))):
            x, y = rng.uniform(0, W, 2)
            rr = rng.uniform(0.5, 3.0) * W / 128
            g = _jit(rng, (150, 140, 130), 20)
            d.ellipse([x - rr, y - rr * 0.8, x + rr, y + rr * 0.8], fill=_rgba(g, 200))
        return im
    if kind == 3:  # grass
        base = _jit(rng, _pick(rng, _GREENS), 10)
        im = _blobs(rng, W, _shade(base, 0.8), [base, _shade(base, 0.6), _shade(base, 1.2)], 12, 8)
        _grass(rng, im, 0.0, int(rng.integers(120, 220)))
        return im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * W / 256))
    # random muted blobs (bokeh)
    cols = [_mix(_jit(rng, rng.uniform(30, 230, 3), 0), (128, 128, 128), 0.4) for _ in range(6)]
    return _blobs(rng, W, cols[0], cols[1:], int(rng.integers(12, 30)), rng.uniform(6, 14))


# ------------------------------------------------------------------------------------------- flowers


def _stem(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, W: int, x: float, y: float, width: float, leaves: bool
) -> None:
    """A slightly curved green stem from (x, y) to below the bottom edge, optionally with leaves."""
    green = _jit(rng, _pick(rng, _GREENS[:2]), 12)
    x1 = x + rng.normal(0, 0.15) * W
    xm = (x + x1) / 2 + rng.normal(0, 0.05) * W
    y1 = W * 1.05
    t = np.linspace(0, 1, 12)
    xs = (1 - t) ** 2 * x + 2 * (1 - t) * t * xm + t**2 * x1
    ys = y + (y1 - y) * t
    d.line(list(zip(xs.tolist(), ys.tolist())), fill=green, width=max(1, int(width)), joint="curve")
    if leaves and y1 - y > 0.2 * W:
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(5, 11))
            side = 1 if rng.random() < 0.5 else -1
            L = rng.uniform(0.18, 0.35) * W
            ang = -math.pi / 2 + side * rng.uniform(0.4, 1.1)
            p0 = (xs[k], ys[k])
            p1 = (xs[k] + L * math.cos(ang), ys[k] + L * math.sin(ang))
            poly = _leaf(p0, p1, L * rng.uniform(0.1, 0.18), "pointed", bend=side * rng.uniform(0.0, 0.15))
            c = _jit(rng, green, 10)
            d.polygon(list(map(tuple, poly.tolist())), fill=c, outline=_shade(c, 0.75))


def _draw_daisy(d: ImageDraw.ImageDraw, rng: np.random.Generator, P: _Pose, W: int) -> None:
    white = _pick(
        rng,
        [(4, (250, 250, 245)), (3, (252, 247, 228)), (2, (240, 242, 250)), (1, (245, 205, 225)), (1, (222, 210, 245))],
    )
    petal = _jit(rng, white, 5)
    edge = _shade(petal, 0.78)
    disc_r = rng.uniform(0.17, 0.25)
    n = int(rng.integers(14, 27))
    width = rng.uniform(0.07, 0.11) * (20.0 / n) ** 0.5
    start = rng.uniform(0, 2 * np.pi)
    layers = 2 if rng.random() < 0.5 else 1
    for layer in range(layers):
        for k in range(n):
            a = start + (k + 0.5 * layer) * 2 * np.pi / n + rng.normal(0, 0.05)
            r1 = rng.uniform(0.85, 1.0) * (0.9 if layer < layers - 1 else 1.0)
            c = _shade(_jit(rng, petal, 4), rng.uniform(0.92, 1.0))
            poly = _radial(disc_r * 0.6, r1, a, width, "ellipse", rng.normal(0, 0.04))
            d.polygon(P.pts(poly), fill=c, outline=edge, width=_lw(W, 1))
    disc = _jit(rng, _pick(rng, [(3, (245, 200, 35)), (2, (235, 175, 20)), (1, (250, 220, 70))]), 8)
    d.polygon(P.pts(_circle(0, 0, disc_r)), fill=disc, outline=_shade(disc, 0.75))
    for _ in range(int(rng.integers(10, 22))):  # florets
        rr, aa = disc_r * math.sqrt(rng.random()) * 0.85, rng.uniform(0, 2 * np.pi)
        x, y = P.pt(rr * math.cos(aa), rr * math.sin(aa))
        s = P.r * disc_r * 0.12
        d.ellipse([x - s, y - s, x + s, y + s], fill=_shade(disc, rng.uniform(0.7, 0.9)))


def _draw_sunflower(d: ImageDraw.ImageDraw, rng: np.random.Generator, P: _Pose, W: int) -> None:
    yellow = _jit(
        rng, _pick(rng, [(3, (250, 200, 20)), (2, (245, 175, 15)), (2, (255, 215, 50)), (1, (240, 150, 10))]), 8
    )
    disc_r = rng.uniform(0.4, 0.55)
    n = int(rng.integers(16, 31))
    start = rng.uniform(0, 2 * np.pi)
    width = rng.uniform(0.9, 1.3) * math.pi * disc_r / n * 1.1
    for layer, (f, dr) in enumerate(((0.78, 0.95), (1.0, 1.0))):
        for k in range(n):
            a = start + (k + 0.5 * layer) * 2 * np.pi / n + rng.normal(0, 0.06)
            r1 = dr * rng.uniform(0.88, 1.02)
            c = _shade(_jit(rng, yellow, 6), f * rng.uniform(0.92, 1.0))
            poly = _radial(disc_r * 0.85, r1, a, width, "lance", rng.normal(0, 0.06))
            d.polygon(P.pts(poly), fill=c, outline=_shade(c, 0.8))
    brown = _jit(rng, _pick(rng, [(3, (75, 45, 20)), (2, (60, 35, 15)), (1, (95, 60, 25)), (1, (50, 35, 20))]), 6)
    d.polygon(P.pts(_circle(0, 0, disc_r, 32)), fill=_shade(brown, 0.7))
    d.polygon(P.pts(_circle(0, 0, disc_r * 0.88, 32)), fill=brown)
    # phyllotaxis seed pattern
    m = int(rng.integers(90, 160))
    i = np.arange(m)
    rr = disc_r * 0.85 * np.sqrt((i + 0.5) / m)
    aa = i * 2.39996323 + rng.uniform(0, 2 * np.pi)
    pts = P.pts(np.stack([rr * np.cos(aa), rr * np.sin(aa)], axis=1))
    s = max(0.8, P.r * disc_r * 0.055)
    tones = [_shade(brown, 1.3), _shade(brown, 0.55), _shade(brown, 0.8), _mix(brown, (120, 110, 40), 0.4)]
    pick = rng.integers(0, len(tones), m)
    for j, (x, y) in enumerate(pts):
        d.ellipse([x - s, y - s, x + s, y + s], fill=tones[int(pick[j])])
    if rng.random() < 0.5:  # greenish-brown centre
        c = _mix(brown, (90, 90, 30), 0.5)
        d.polygon(P.pts(_circle(0, 0, disc_r * rng.uniform(0.15, 0.3))), fill=c)


def _draw_dandelion(d: ImageDraw.ImageDraw, rng: np.random.Generator, P: _Pose, W: int) -> None:
    if rng.random() < 0.3:  # white seed ball ("clock")
        white = _jit(rng, (240, 240, 235), 5)
        d.polygon(P.pts(_circle(0, 0, 0.92, 32)), fill=_rgba(white, 45))
        n = int(rng.integers(70, 130))
        aa = rng.uniform(0, 2 * np.pi, n)
        rr = rng.uniform(0.75, 1.0, n)
        lw = _lw(W, 1)
        cx, cy = P.pt(0, 0)
        tips = P.pts(np.stack([rr * np.cos(aa), rr * np.sin(aa)], axis=1))
        for x, y in tips:
            d.line([(cx, cy), (x, y)], fill=_rgba(white, 150), width=lw)
        s = P.r * 0.045
        for x, y in tips:
            d.ellipse([x - s, y - s, x + s, y + s], fill=_rgba(white, 200))
        c = _jit(rng, (120, 100, 70), 10)
        d.polygon(P.pts(_circle(0, 0, 0.12)), fill=c)
        return
    yellow = _jit(rng, _pick(rng, [(3, (255, 215, 15)), (2, (250, 195, 0)), (1, (255, 230, 60))]), 6)
    # green bracts peeking out behind the head
    if rng.random() < 0.6:
        g = _jit(rng, (80, 130, 40), 12)
        for _ in range(int(rng.integers(6, 12))):
            a = rng.uniform(0, 2 * np.pi)
            d.polygon(P.pts(_radial(0.3, rng.uniform(0.95, 1.15), a, 0.05, "lance")), fill=g)
    d.polygon(P.pts(_circle(0, 0, 0.72, 32)), fill=_shade(yellow, 0.8))
    lw_outer, lw_inner = _lw(W, 2.2), _lw(W, 1.6)
    for layer, (r_hi, r_lo, f, n) in enumerate(((1.0, 0.75, 0.82, 150), (0.8, 0.5, 0.92, 120), (0.55, 0.25, 1.0, 80))):
        n = int(n * rng.uniform(0.8, 1.2))
        aa = rng.uniform(0, 2 * np.pi, n)
        r1 = rng.uniform(r_lo, r_hi, n)
        pts = P.pts(np.stack([r1 * np.cos(aa), r1 * np.sin(aa)], axis=1))
        base = P.pts(np.stack([0.08 * np.cos(aa), 0.08 * np.sin(aa)], axis=1))
        lw = lw_outer if layer == 0 else lw_inner
        for (x0, y0), (x1, y1), j in zip(base, pts, range(n)):
            c = _shade(yellow, f * (0.85 + 0.15 * ((j * 7919) % 13) / 12))
            d.line([(x0, y0), (x1, y1)], fill=c, width=lw)
    d.polygon(P.pts(_circle(0, 0, 0.15)), fill=_rgba(_shade(yellow, 1.15), 130))


def _draw_rose(d: ImageDraw.ImageDraw, rng: np.random.Generator, P: _Pose, W: int) -> None:
    colour = _jit(
        rng,
        _pick(
            rng,
            [
                (3, (200, 20, 35)),
                (2, (160, 10, 30)),
                (2, (240, 120, 160)),
                (1, (225, 80, 120)),
                (2, (245, 238, 228)),
                (1, (250, 175, 140)),
            ],
        ),
        8,
    )
    # sepals / leaves behind
    if rng.random() < 0.7:
        g = _jit(rng, (55, 110, 40), 12)
        for _ in range(int(rng.integers(2, 5))):
            a = rng.uniform(0, 2 * np.pi)
            poly = _radial(0.4, rng.uniform(1.15, 1.45), a, 0.22, "pointed", rng.normal(0, 0.08))
            d.polygon(P.pts(poly), fill=g, outline=_shade(g, 0.7))
    layers = int(rng.integers(4, 7))
    edge_w = _lw(W, 2)
    for k in range(layers):
        rho = 1.0 - 0.8 * k / layers
        n = 5 if k == 0 else int(rng.integers(3, 6))
        off = rng.uniform(0, 2 * np.pi)
        dark = (
            0.6 + 0.4 * (1 - k / layers) if colour[0] + colour[1] + colour[2] < 600 else 0.85 + 0.15 * (1 - k / layers)
        )
        for j in range(n):
            a = off + j * 2 * np.pi / n
            pc = _shade(colour, dark * rng.uniform(0.95, 1.05))
            cx, cy = 0.42 * rho * math.cos(a), 0.42 * rho * math.sin(a)
            poly = _circle(cx, cy, 0.58 * rho * rng.uniform(0.9, 1.05), 20)
            d.polygon(P.pts(poly), fill=pc, outline=_shade(pc, 0.65), width=edge_w)
    # the rolled-up centre: a dark spiral
    turns = rng.uniform(1.8, 2.8)
    t = np.linspace(0, turns * 2 * np.pi, 60)
    r = 0.28 * (t / t[-1]) * (1 - 0.8 * (layers - 4) / 6)
    sgn = 1 if rng.random() < 0.5 else -1
    sp = np.stack([r * np.cos(sgn * t), r * np.sin(sgn * t)], axis=1)
    d.line(P.pts(sp), fill=_shade(colour, 0.5), width=_lw(W, 2.5), joint="curve")


def _draw_tulip(d: ImageDraw.ImageDraw, rng: np.random.Generator, P: _Pose, W: int) -> None:
    """Side view, upright: origin = base of the cup, cup extends up to y = -1 (local units)."""
    colour = _jit(
        rng,
        _pick(
            rng,
            [
                (3, (220, 30, 40)),
                (2, (240, 110, 160)),
                (2, (250, 210, 40)),
                (2, (130, 50, 150)),
                (1, (245, 120, 30)),
                (1, (245, 240, 230)),
            ],
        ),
        8,
    )
    w = rng.uniform(0.34, 0.46)  # cup half-width
    h = 1.0
    open_ = rng.uniform(0.0, 0.25)
    back = _shade(colour, 0.72)
    edge = _shade(colour, 0.6)
    lw = _lw(W, 1.5)
    # back petals (tips left and right, behind)
    for side in (-1, 1):
        p1 = (side * (w * 0.55 + open_ * 0.5), -h * rng.uniform(0.92, 1.02))
        poly = _leaf((side * w * 0.15, 0.1), p1, w * 0.75, "pointed", bend=side * 0.08)
        d.polygon(P.pts(poly), fill=back, outline=edge, width=lw)
    # side petals
    for side in (-1, 1):
        p1 = (side * (w * 0.7 + open_), -h * rng.uniform(0.78, 0.9))
        poly = _leaf((0.0, 0.12), p1, w * 0.8, "pointed", bend=-side * 0.1)
        c = _shade(colour, 0.86)
        d.polygon(P.pts(poly), fill=c, outline=edge, width=lw)
    # front petal
    c = _jit(rng, colour, 4)
    poly = _leaf((0.0, 0.14), (rng.normal(0, 0.04), -h * rng.uniform(0.95, 1.05)), w * 0.95, "pointed")
    d.polygon(P.pts(poly), fill=c, outline=edge, width=lw)
    # midrib / highlight on the front petal
    rib = np.array([[0.0, 0.0], [0.0, -0.45], [0.0, -0.75]])
    d.line(P.pts(rib), fill=_shade(colour, 0.82), width=_lw(W, 2))
    hl = _leaf((-w * 0.35, -0.1), (-w * 0.25, -0.7), w * 0.12, "ellipse")
    d.polygon(P.pts(hl), fill=_rgba(_shade(colour, 1.35), 110))


_DRAW = {
    "daisy": _draw_daisy,
    "dandelion": _draw_dandelion,
    "roses": _draw_rose,
    "sunflowers": _draw_sunflower,
    "tulips": _draw_tulip,
}


def _flower(
    im: Image.Image, cls: str, rng: np.random.Generator, W: int, scale: float = 1.0, stem_p: float = 0.5
) -> None:
    """Draw one flower of ``cls`` (with stem/leaves as appropriate) at a random pose onto ``im``."""
    d = ImageDraw.Draw(im, "RGBA")
    if cls == "tulips":
        r = rng.uniform(0.26, 0.42) * W * scale
        cx = rng.uniform(0.3, 0.7) * W
        cy = rng.uniform(0.45, 0.72) * W
        rot = rng.normal(0, 0.2)
        base = (cx, cy)
        _stem(d, rng, W, base[0], base[1], r * rng.uniform(0.08, 0.13), leaves=True)
        P = _Pose(cx, cy, r, rot, 1.0)
    else:
        r = rng.uniform(0.24, 0.44) * W * scale
        cx = rng.uniform(0.28, 0.72) * W
        cy = rng.uniform(0.28, 0.72) * W
        if rng.random() < stem_p:
            _stem(d, rng, W, cx, cy, r * rng.uniform(0.06, 0.1), leaves=rng.random() < 0.5)
        P = _Pose(cx, cy, r, rng.uniform(0, 2 * np.pi), rng.uniform(0.55, 1.0))
    _DRAW[cls](d, rng, P, W)


def _occlude(im: Image.Image, rng: np.random.Generator, W: int) -> None:
    d = ImageDraw.Draw(im, "RGBA")
    for _ in range(int(rng.integers(1, 3))):
        edge = int(rng.integers(4))
        t = rng.uniform(0.1, 0.9) * W
        p0 = [(t, W * 1.05), (t, -0.05 * W), (-0.05 * W, t), (W * 1.05, t)][edge]
        L = rng.uniform(0.35, 0.6) * W
        tgt = np.array([W / 2, W / 2]) + rng.normal(0, 0.15, 2) * W
        v = tgt - np.array(p0)
        v = v / (np.hypot(*v) or 1.0)
        p1 = (p0[0] + v[0] * L, p0[1] + v[1] * L)
        g = _jit(rng, _pick(rng, _GREENS), 14)
        poly = _leaf(p0, p1, L * rng.uniform(0.12, 0.2), "pointed", bend=rng.normal(0, 0.12), n=18)
        d.polygon(list(map(tuple, poly.tolist())), fill=g, outline=_shade(g, 0.7))
        d.line([p0, (p0[0] + v[0] * L * 0.9, p0[1] + v[1] * L * 0.9)], fill=_shade(g, 1.2), width=_lw(W, 1.5))


# --------------------------------------------------------------------------------------------- public


def render_flower(cls: str, rng: np.random.Generator, size: int) -> Image.Image:
    """One ``size`` x ``size`` RGB image of class ``cls`` (one of :data:`~core.data.flowers.FLOWER_CLASSES`),
    drawn from ``rng``."""
    if cls not in _DRAW:
        raise ConfigError(f"Unknown sample class {cls!r}; expected one of {', '.join(FLOWER_CLASSES)}.")
    if size < MIN_SIZE:
        raise ConfigError(f"Sample image size must be at least {MIN_SIZE} px (got {size}).")
    W = size * _SUPERSAMPLE
    im = _background(rng, W)
    if rng.random() < 0.25:  # a blurred companion flower of the same kind in the background
        _flower(im, cls, rng, W, scale=rng.uniform(0.45, 0.7), stem_p=0.3)
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 4.0) * W / 256))
    _flower(im, cls, rng, W)
    if rng.random() < 0.3:
        _occlude(im, rng, W)
    im = im.resize((size, size), Image.LANCZOS)
    if rng.random() < 0.6:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8) * size / 128))
    arr = np.asarray(im, dtype=np.float32)
    gain = rng.normal(1.0, 0.05, 3) * rng.uniform(0.85, 1.12)  # colour cast + brightness
    arr = arr * gain[None, None, :] + rng.normal(0, 6)
    arr = arr + rng.normal(0.0, rng.uniform(2.0, 7.0), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
