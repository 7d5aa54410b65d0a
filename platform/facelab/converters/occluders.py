"""Occluders drawn on a 224x224 face: the face's geometry (landmarks' convex hull, eyes, nose,
mouth, chin), hard-edged polygon masks, the occluder shapes (bar, blob, hand and forearm,
medical mask, sunglasses), their paint, and the exact occluded fraction of the face hull:

    FaceOcclusion = |hull mask AND occluder mask| / |hull mask|     (pixels of the 224x224 image)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 224
KINDS = ("bar", "blob", "hand", "mask", "sunglasses", "none")
SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 90), (161, 102, 67), (118, 74, 46)])


@dataclass
class FaceGeometry:
    """Where the face is in a 224x224 image: its landmarks' hull and a few key points."""

    hull: np.ndarray  # k x 2 convex hull vertices (x, y)
    eyes: np.ndarray  # 2 x 2 eye centres
    nose: np.ndarray  # nose tip
    mouth: np.ndarray  # mouth centre
    chin: np.ndarray
    method: str  # "mesh" or "dlib68"

    @classmethod
    def from_points(cls, points: np.ndarray, method: str) -> FaceGeometry:
        import cv2

        points = np.asarray(points, np.float32)[:, :2]
        hull = cv2.convexHull(points)[:, 0, :]
        if method == "mesh":
            eyes = np.stack([points[[33, 133, 159, 145]].mean(0), points[[362, 263, 386, 374]].mean(0)])
            return cls(hull, eyes, points[1], points[[13, 14]].mean(0), points[152], method)
        eyes = np.stack([points[36:42].mean(0), points[42:48].mean(0)])
        return cls(hull, eyes, points[30], points[48:68].mean(0), points[8], method)

    @property
    def box(self) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.hull.min(0), self.hull.max(0)
        return float(x0), float(y0), float(x1), float(y1)


# --- masks -------------------------------------------------------------------------------

def polygon_mask(polygons: list[np.ndarray], shape=(SIZE, SIZE)) -> np.ndarray:
    """Pixels inside any of the polygons (their union), rasterised at 1/16 pixel precision, hard-edged."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:  # one call each: a single call would XOR overlapping polygons
        cv2.fillPoly(mask, [np.round(np.asarray(polygon, np.float64) * 16).astype(np.int32)], 1,
                     lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def hull_mask(geometry: FaceGeometry) -> np.ndarray:
    return polygon_mask([geometry.hull])


def occluded_fraction(hull: np.ndarray, occluder: np.ndarray) -> float:
    """|hull AND occluder| / |hull|."""
    return float((hull & occluder).sum() / hull.sum())


# --- occluder shapes (polygons in image pixels) -----------------------------------------------

def _ellipse(centre, axes, angle: float, points: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    xy = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], 1)
    c, s = np.cos(angle), np.sin(angle)
    return xy @ np.array([[c, s], [-s, c]]) + np.asarray(centre, float)


def _capsule(a, b, radius: float) -> np.ndarray:
    """A thick segment with round ends (a finger, a strap)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    angle = np.arctan2(*(b - a)[::-1])
    t1 = np.linspace(angle + np.pi / 2, angle + 3 * np.pi / 2, 10)
    t2 = np.linspace(angle - np.pi / 2, angle + np.pi / 2, 10)
    return np.concatenate([a + radius * np.stack([np.cos(t1), np.sin(t1)], 1),
                           b + radius * np.stack([np.cos(t2), np.sin(t2)], 1)])


def _rectangle(centre, length: float, thickness: float, angle: float) -> np.ndarray:
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [length / 2, thickness / 2]
    c, s = np.cos(angle), np.sin(angle)
    return corners @ np.array([[c, s], [-s, c]]) + np.asarray(centre, float)


def bar(g: FaceGeometry, rng: np.random.Generator) -> list[np.ndarray]:
    x0, y0, x1, y1 = g.box
    w, h = x1 - x0, y1 - y0
    centre = ((x0 + x1) / 2 + rng.uniform(-0.5, 0.5) * w, (y0 + y1) / 2 + rng.uniform(-0.5, 0.5) * h)
    return [_rectangle(centre, w * rng.uniform(0.5, 1.6), h * rng.uniform(0.06, 0.4), rng.uniform(0, np.pi))]


def blob(g: FaceGeometry, rng: np.random.Generator) -> list[np.ndarray]:
    x0, y0, x1, y1 = g.box
    w = x1 - x0
    centre = np.array([rng.uniform(x0 - 0.1 * w, x1 + 0.1 * w), rng.uniform(y0, y1)])
    phi = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = sum(rng.uniform(0, 0.15) * np.sin(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    radius = w * rng.uniform(0.08, 0.42) * (1 + wobble)
    return [centre + np.stack([radius * np.cos(phi), radius * np.sin(phi)], 1)]


def hand(g: FaceGeometry, rng: np.random.Generator) -> list[np.ndarray]:
    """A palm with four fingers and a thumb, and the forearm leading out of the picture."""
    x0, y0, x1, y1 = g.box
    w = x1 - x0
    s = w * rng.uniform(0.7, 1.25)
    palm = np.array([rng.uniform(x0, x1), rng.uniform(y0 + 0.2 * (y1 - y0), y1 + 0.1 * (y1 - y0))])
    angle = rng.uniform(0, 2 * np.pi)  # where the fingers point
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    shapes = [_ellipse(palm, (0.2 * s, 0.16 * s), angle),
              _capsule(palm, palm - along * 1.5 * s, 0.13 * s)]  # forearm
    for k, offset in enumerate(np.linspace(-0.11, 0.11, 4) * s):
        base = palm + along * 0.14 * s + across * offset
        shapes.append(_capsule(base, base + along * s * (0.26 + 0.06 * (k in (1, 2))), 0.035 * s))
    side = rng.choice([-1, 1])
    thumb = palm + across * side * 0.15 * s
    shapes.append(_capsule(thumb, thumb + (along + across * side) * 0.16 * s, 0.04 * s))
    return shapes


def mask(g: FaceGeometry, rng: np.random.Generator) -> list[np.ndarray]:
    """A medical mask from around the nose to under the chin, with its straps."""
    x0, y0, x1, y1 = g.box
    w, h = x1 - x0, y1 - y0
    top = g.nose[1] + rng.uniform(-0.12, 0.05) * h
    bottom = g.chin[1] + rng.uniform(-0.02, 0.05) * h
    left, right = x0 + rng.uniform(0, 0.08) * w, x1 - rng.uniform(0, 0.08) * w
    t = np.linspace(0, np.pi, 16)
    arc = np.stack([(left + right) / 2 + (right - left) / 2 * np.cos(t), top + (bottom - top) * np.sin(t) ** 0.7], 1)
    body = np.concatenate([[[left, top], [(left + right) / 2, top - 0.03 * h], [right, top]], arc])
    straps = [_capsule((left, top + 0.05 * h), (x0 - 0.15 * w, g.eyes[0][1]), 1.5),
              _capsule((right, top + 0.05 * h), (x1 + 0.15 * w, g.eyes[1][1]), 1.5)]
    return [body, *straps]


def sunglasses(g: FaceGeometry, rng: np.random.Generator) -> list[np.ndarray]:
    gap = float(np.linalg.norm(g.eyes[1] - g.eyes[0]))
    tilt = np.arctan2(*(g.eyes[1] - g.eyes[0])[::-1])
    axes = (gap * rng.uniform(0.33, 0.5), gap * rng.uniform(0.22, 0.36))
    lenses = [_ellipse(e, axes, tilt) for e in g.eyes]
    bridge = _capsule(g.eyes[0] + (axes[0] * 0.9, 0), g.eyes[1] - (axes[0] * 0.9, 0), 2.0)
    x0, _, x1, _ = g.box
    arms = [_capsule(g.eyes[0] - (axes[0], 0), (x0 - 10, g.eyes[0][1]), 2.0),
            _capsule(g.eyes[1] + (axes[0], 0), (x1 + 10, g.eyes[1][1]), 2.0)]
    return [*lenses, bridge, *arms]


SHAPES = {"bar": bar, "blob": blob, "hand": hand, "mask": mask, "sunglasses": sunglasses}


def paint_colour(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "hand":
        return SKIN[rng.integers(len(SKIN))] * rng.uniform(0.8, 1.05)
    if kind == "sunglasses":
        return rng.uniform(5, 60, 3)
    if kind == "mask":
        palette = np.array([(170, 205, 230), (236, 236, 236), (35, 35, 40), (120, 160, 200), (230, 180, 190)])
        return palette[rng.integers(len(palette))].astype(float)
    return rng.uniform(0, 255, 3)


def paint(image: np.ndarray, occluder: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The occluder's pixels in a colour of its kind, with smooth shading and grain."""
    import cv2

    colour = paint_colour(kind, rng)
    shade = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 12)
    shade = shade / (np.abs(shade).max() + 1e-6) * rng.uniform(10, 35)
    grain = rng.normal(0, rng.uniform(2, 10), (SIZE, SIZE))
    fill = np.clip(colour[None, None, :] + (shade + grain)[:, :, None], 0, 255).astype(np.uint8)
    out = image.copy()
    out[occluder] = fill[occluder]
    return out


def occlude(image: np.ndarray, geometry: FaceGeometry, kind: str, rng: np.random.Generator):
    """(occluded image, occluder mask, exact occluded fraction of the face hull)."""
    hull = hull_mask(geometry)
    if kind == "none":
        return image.copy(), np.zeros_like(hull), 0.0
    occluder = polygon_mask(SHAPES[kind](geometry, rng))
    return paint(image, occluder, kind, rng), occluder, occluded_fraction(hull, occluder)
