"""Face-occlusion challenge data (seed 001 layout) from real UTKFace faces with drawn occluders.

Every face is resized to the challenge's 224x224; its face region is the convex hull of
mediapipe's 468-point mesh (dlib's 68 points when the mesh finds no face; faces neither finds
are skipped and counted). One occluder is drawn on it (bar, blob, hand and forearm, medical
mask, sunglasses; or none), rasterised as a hard-edged binary mask and painted with texture, and

    FaceOcclusion = |hull mask AND occluder mask| / |hull mask|     (pixels of the 224x224 image)

exactly. `gender` is UTKFace's label in the challenge's convention (1.0 male, 0.0 female). A
fixed share of each split (`grey_share`, 14% as in the real data's 14k of 101k) is converted
to greyscale after drawing and named `database2/...`; colour images are `database1/...`.

Written: crops_100K/, train_100K.csv (`filename FaceOcclusion gender`, space-delimited),
test_students.csv (filename only), test_truth.csv (the test rows with labels), sources.csv
(filename, UTKFace source file, hull method, occluder, grey, split) and, with `masks=True`,
masks/<filename>.png: grey level 85 = face hull, 170 = occluder, 255 = both. Train and test use
disjoint faces; `n` train rows (default: one per train face) and 0.3 n test rows, as in the
challenge; when n asks for more rows than faces, faces repeat with new occluders.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from facelab.errors import FacelabError
from facelab.progress import progress

SIZE = 224
TEST_SHARE = 0.3  # test rows per train row (30.5k / 101k in the challenge)
KINDS = ("bar", "blob", "hand", "mask", "sunglasses", "none")
KIND_P = (0.22, 0.20, 0.22, 0.15, 0.13, 0.08)
MESH_PAD = 56  # mediapipe finds tightly cropped faces more reliably with a border
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


class FaceFinder:
    """mediapipe's mesh first, dlib's 68 landmarks on a HOG box second."""

    def __init__(self):
        from facelab.faces import FaceMesh

        self.mesh = FaceMesh()
        self._hog = None

    def __call__(self, image: np.ndarray) -> FaceGeometry | None:
        padded = np.pad(image, ((MESH_PAD, MESH_PAD), (MESH_PAD, MESH_PAD), (0, 0)))
        meshes = self.mesh(padded)
        if meshes:
            return FaceGeometry.from_points(meshes[0][:, :2] - MESH_PAD, "mesh")
        from facelab.faces import dlib_points, get_detector

        self._hog = self._hog or get_detector("hog")
        faces = self._hog(image)
        if not faces:
            return None
        return FaceGeometry.from_points(dlib_points(image, faces[0].box), "dlib68")


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


# --- the converter ---------------------------------------------------------------------------

def _faces(utk_root: Path) -> tuple[pd.DataFrame, Counter]:
    """UTKFace rows with usable labels (file, gender), and why others were left out."""
    from facelab.formats.utkface import labels_table

    table = labels_table(utk_root).to_pandas()
    skipped = Counter()
    ok = table["gender"].isin(["0", "1"]) & table["file"].map(lambda f: (utk_root / f).is_file())
    skipped["bad label or missing image"] += int((~ok).sum())
    return table[ok].reset_index(drop=True), skipped


def _pools(faces: pd.DataFrame, n: int | None, rng: np.random.Generator) -> dict[str, tuple[list[int], int]]:
    """Disjoint face indices per split and the rows wanted from each."""
    order = [int(i) for i in rng.permutation(len(faces))]
    cut = int(round(len(order) / (1 + TEST_SHARE)))
    n_train = n or cut
    n_test = max(1, int(round(TEST_SHARE * n_train)))
    if n_train + n_test <= len(order):
        return {"train": (order[:n_train], n_train), "test": (order[n_train:n_train + n_test], n_test)}
    return {"train": (order[:cut], n_train), "test": (order[cut:], n_test)}


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, grey_share: float = 0.14,
            masks: bool = True, **_: object) -> dict:
    """Write the occlusion challenge layout under `out` from `data_root`/utkface (see the module doc)."""
    import cv2

    from facelab.formats.images import save_jpeg
    from facelab.formats.occlusion import FILES, IMAGES

    utk_root = Path(data_root) / "utkface"
    if not utk_root.is_dir():
        raise FacelabError(f"{utk_root}: UTKFace not found under the data root")
    out = Path(out)
    rng = np.random.default_rng(seed)
    faces, skipped = _faces(utk_root)
    finder, geometries = FaceFinder(), {}
    rows, counter = [], 0
    for split, (pool, wanted) in _pools(faces, n, rng).items():
        alive, made, i = list(pool), [], 0
        grey = set(rng.permutation(wanted)[:int(round(grey_share * wanted))].tolist())
        bar_ = progress(range(wanted), f"occlusion {split}")
        for _ in bar_:
            while alive:
                face = alive[i % len(alive)]
                if face not in geometries:
                    source = cv2.resize(cv2.cvtColor(cv2.imread(str(utk_root / faces["file"][face])), cv2.COLOR_BGR2RGB),
                                        (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
                    geometries[face] = (source, finder(source))
                if geometries[face][1] is not None:
                    break
                alive.remove(face)
                skipped["no face mesh or landmarks"] += 1
            if not alive:
                break
            source, geometry = geometries[face]
            kind = str(rng.choice(KINDS, p=KIND_P))
            image, occluder, fraction = occlude(source, geometry, kind, rng)
            is_grey = len(made) in grey
            if is_grey:
                image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
            counter += 1
            name = f"database{2 if is_grey else 1}/img{counter:08d}.jpg"
            save_jpeg(image, out / IMAGES / name, quality=92)
            if masks:
                _save_mask(hull_mask(geometry), occluder, out / "masks" / PurePosixPath(name).with_suffix(".png"))
            made.append({"filename": name, "FaceOcclusion": round(fraction, 6),
                         "gender": 1.0 if faces["gender"][face] == "0" else 0.0, "source": faces["file"][face],
                         "hull": geometry.method, "occluder": kind, "grey": is_grey, "split": split})
            i += 1
        rows += made
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise FacelabError(f"{utk_root}: no usable face ({dict(skipped)})")
    _write_layout(frame, out, FILES)
    return _summary(frame, out, skipped)


def _save_mask(hull: np.ndarray, occluder: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((hull * 85 + occluder * 170).astype(np.uint8)).save(path)


def _write_layout(frame: pd.DataFrame, out: Path, files: dict[str, str]) -> None:
    labels = ["filename", "FaceOcclusion", "gender"]
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    train[labels].to_csv(out / files["train"], sep=" ", index=False)
    test[["filename"]].to_csv(out / files["test"], sep=" ", index=False)
    test[labels].to_csv(out / "test_truth.csv", sep=" ", index=False)
    frame[["filename", "source", "hull", "occluder", "grey", "split"]].to_csv(out / "sources.csv", index=False)


def _summary(frame: pd.DataFrame, out: Path, skipped: Counter) -> dict:
    return {
        "task": "occlusion", "out": str(out),
        "rows": {s: int((frame["split"] == s).sum()) for s in ("train", "test")},
        "faces": int(frame["source"].nunique()),
        "grey_share": round(float(frame["grey"].mean()), 4),
        "occlusion_mean": round(float(frame["FaceOcclusion"].mean()), 4),
        "occlusion_quantiles": {q: round(float(frame["FaceOcclusion"].quantile(q)), 4) for q in (0.1, 0.5, 0.9)},
        "occluders": dict(Counter(frame["occluder"])),
        "hull": dict(Counter(frame["hull"])),
        "skipped": dict(skipped),
    }
