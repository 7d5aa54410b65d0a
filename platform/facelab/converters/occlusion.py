"""Face-occlusion challenge data (seed 001 layout) from real UTKFace faces with drawn occluders.

Every face is resized to the challenge's 224x224; its face region is the convex hull of
mediapipe's 468-point mesh (dlib's 68 points when the mesh finds no face; faces neither finds
are skipped and counted). One occluder is drawn on it (bar, blob, hand and forearm, medical
mask, sunglasses; or none; drawn by `facelab.converters.occluders`), rasterised as a hard-edged
binary mask and painted with texture, and

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
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from facelab.converters.occluders import KINDS, SIZE, FaceGeometry, hull_mask, occlude
from facelab.errors import FacelabError
from facelab.progress import progress

TEST_SHARE = 0.3  # test rows per train row (30.5k / 101k in the challenge)
KIND_P = (0.22, 0.20, 0.22, 0.15, 0.13, 0.08)  # the chances of occluders.KINDS
MESH_PAD = 56  # mediapipe finds tightly cropped faces more reliably with a border


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
