"""Cartoon faces drawn with PIL: the synthetic images of the Blitz image challenges.

A `Face` is a handful of parameters (an identity plus an expression); `draw_face` renders it
at any centre and size and returns where its parts landed, so a generator can put a mask on
the lower face, or re-render one identity with small changes (a crowd's missing face).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

SKIN_TONES: tuple[RGB, ...] = ((255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 90),
                               (161, 102, 67), (118, 74, 46), (86, 54, 35))
HAIR_COLOURS: tuple[RGB, ...] = ((20, 16, 14), (60, 40, 25), (110, 70, 35), (170, 120, 60),
                                 (220, 190, 120), (150, 50, 30))
EYE_COLOURS: tuple[RGB, ...] = ((60, 40, 20), (40, 90, 160), (60, 120, 70), (100, 100, 100))


@dataclass(frozen=True)
class Face:
    skin: RGB
    hair: RGB
    hair_style: int  # 0 bald, 1 short, 2 long, 3 fringe
    aspect: float  # face height / width, about 1.05-1.5
    eye_gap: float  # eye centre from the mid line, fraction of the half-width
    eye_size: float  # eye radius, fraction of the half-width
    eye_colour: RGB
    brow_tilt: float  # rise of the brow's outer end, fraction of the half-width
    nose: float  # nose length, fraction of the half-height
    mouth_width: float  # half-width of the mouth, fraction of the face half-width
    smile: float  # -1 (frown) .. 1 (smile): the expression
    wrinkles: int = 0  # forehead lines
    glasses: bool = False
    beard: bool = False

    def vary(self, **changes) -> Face:
        return replace(self, **changes)


@dataclass(frozen=True)
class Placement:
    """Where a face was drawn (pixels)."""

    cx: float
    cy: float
    rx: float
    ry: float
    nose_y: float  # nose tip
    mouth_y: float
    chin_y: float


def _pick(rng: np.random.Generator, palette: tuple[RGB, ...], jitter: int = 12) -> RGB:
    base = np.array(palette[rng.integers(len(palette))])
    return tuple(int(v) for v in np.clip(base + rng.integers(-jitter, jitter + 1, 3), 0, 255))


def random_face(rng: np.random.Generator, **overrides) -> Face:
    """A random identity and expression; `overrides` fix any field."""
    fields = dict(
        skin=_pick(rng, SKIN_TONES),
        hair=_pick(rng, HAIR_COLOURS),
        hair_style=int(rng.integers(4)),
        aspect=float(rng.uniform(1.1, 1.4)),
        eye_gap=float(rng.uniform(0.3, 0.5)),
        eye_size=float(rng.uniform(0.09, 0.17)),
        eye_colour=_pick(rng, EYE_COLOURS, 20),
        brow_tilt=float(rng.uniform(-0.12, 0.12)),
        nose=float(rng.uniform(0.15, 0.32)),
        mouth_width=float(rng.uniform(0.28, 0.55)),
        smile=float(rng.uniform(-0.6, 1.0)),
        wrinkles=0,
        glasses=bool(rng.random() < 0.15),
        beard=bool(rng.random() < 0.15),
    )
    fields.update(overrides)
    return Face(**fields)


def mix(colour: RGB, other: RGB, t: float) -> RGB:
    """`colour` moved a fraction t (0..1) of the way to `other`."""
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(colour, other))


def noise_background(rng: np.random.Generator, width: int, height: int | None = None) -> Image.Image:
    """A smooth random colour field with pixel noise: the clutter behind a face."""
    height = height or width
    coarse = Image.fromarray(rng.integers(30, 226, (4, 4, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.int16)
    noise = rng.integers(-10, 11, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(field + noise, 0, 255).astype(np.uint8))


def draw_face(image: Image.Image, face: Face, cx: float, cy: float, rx: float) -> Placement:
    """Draw `face` centred at (cx, cy) with half-width rx; returns where its parts are."""
    d = ImageDraw.Draw(image)
    ry = rx * face.aspect
    shade = mix(face.skin, (0, 0, 0), 0.3)
    line = max(1, int(round(rx / 30)))
    if face.hair_style == 2:  # long hair falls behind the face
        d.ellipse((cx - 1.22 * rx, cy - 1.12 * ry, cx + 1.22 * rx, cy + 0.75 * ry), fill=face.hair)
    for side in (-1, 1):  # ears
        ex = cx + side * rx
        d.ellipse((ex - 0.16 * rx, cy - 0.2 * ry, ex + 0.16 * rx, cy + 0.12 * ry), fill=face.skin, outline=shade)
    d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=face.skin, outline=shade, width=line)
    if face.hair_style in (1, 2, 3):  # a cap of hair over the top of the head
        d.chord((cx - 1.04 * rx, cy - 1.08 * ry, cx + 1.04 * rx, cy - 0.1 * ry), 180, 360, fill=face.hair)
    if face.hair_style == 3:  # fringe: spikes down over the forehead
        top, bottom = cy - 0.6 * ry, cy - 0.42 * ry
        xs = np.linspace(cx - 0.8 * rx, cx + 0.8 * rx, 7)
        for a, b in zip(xs[:-1], xs[1:]):
            d.polygon([(a, top), (b, top), ((a + b) / 2, bottom)], fill=face.hair)
    for i in range(face.wrinkles):  # forehead lines
        y = cy - 0.4 * ry + i * 0.045 * ry
        d.arc((cx - 0.45 * rx, y - 0.06 * ry, cx + 0.45 * rx, y + 0.06 * ry), 200, 340, fill=shade, width=line)
    eye_y, er = cy - 0.12 * ry, face.eye_size * rx
    for side in (-1, 1):
        ex = cx + side * face.eye_gap * rx
        d.ellipse((ex - er, eye_y - 0.7 * er, ex + er, eye_y + 0.7 * er), fill=(250, 250, 250), outline=shade)
        d.ellipse((ex - 0.5 * er, eye_y - 0.5 * er, ex + 0.5 * er, eye_y + 0.5 * er), fill=face.eye_colour)
        d.ellipse((ex - 0.22 * er, eye_y - 0.22 * er, ex + 0.22 * er, eye_y + 0.22 * er), fill=(10, 10, 10))
        brow_y = eye_y - 1.6 * er
        inner, outer = ex - side * 0.9 * er, ex + side * 1.3 * er
        d.line([(inner, brow_y), (outer, brow_y - face.brow_tilt * rx)], fill=mix(face.hair, (0, 0, 0), 0.2),
               width=max(2, int(rx / 18)))
        if face.glasses:
            g = 1.6 * er
            d.ellipse((ex - g, eye_y - g, ex + g, eye_y + g), outline=(30, 30, 30), width=line + 1)
    if face.glasses:
        d.line([(cx - face.eye_gap * rx + 1.6 * er, eye_y), (cx + face.eye_gap * rx - 1.6 * er, eye_y)],
               fill=(30, 30, 30), width=line + 1)
    nose_y = cy + face.nose * ry
    d.line([(cx, eye_y + 0.5 * er), (cx - 0.08 * rx, nose_y), (cx + 0.05 * rx, nose_y)], fill=shade, width=line)
    mouth_y = cy + 0.52 * ry
    if face.beard:
        d.chord((cx - rx, cy - 0.1 * ry, cx + rx, cy + ry), 20, 160, fill=face.hair)
    t = np.linspace(-1, 1, 12)
    xs = cx + t * face.mouth_width * rx
    ys = mouth_y + face.smile * 0.12 * ry * (1 - t * t)
    d.line(list(zip(xs, ys)), fill=(150, 40, 50), width=max(2, int(rx / 14)), joint="curve")
    return Placement(cx, cy, rx, ry, nose_y, mouth_y, cy + ry)


def portrait(rng: np.random.Generator, face: Face, size: int, *, scale: float = 0.3,
             jitter: float = 0.05) -> tuple[Image.Image, Placement]:
    """A size x size image: noise background, `face` near the centre with half-width
    about `scale * size`, position and size jittered by a fraction `jitter` of the image."""
    image = noise_background(rng, size)
    rx = size * scale * float(rng.uniform(1 - jitter * 2, 1 + jitter * 2))
    cx, cy = size * (0.5 + rng.uniform(-jitter, jitter, 2))
    return image, draw_face(image, face, cx, cy, rx)
