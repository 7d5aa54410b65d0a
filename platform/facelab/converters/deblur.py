"""AI Blitz XIII face-de-blurring data (seed 000, section 5) from real UTKFace faces.

The sharp originals are UTKFace's aligned 200x200 crops (`<data_root>/utkface/images`), kept
at their size. Each face gets one blur, drawn from a seeded generator:

- Gaussian (half the faces): sigma uniform in [1.5, 4.0] pixels ([2.5, 5.0] with `blur="strong"`);
- linear motion (the other half): a line kernel of length uniform in [7, 21] pixels ([13, 21]
  strong) at an angle uniform in [0, 180) degrees (a 1-pixel anti-aliased line, normalised to sum 1);

both with reflected borders, then Gaussian sensor noise of sigma 2 grey levels, clipped to uint8.
Images are saved as JPEG quality 95, as the challenge's were.

Splits are a seeded permutation of the sorted file names in the challenge's proportions
(5000 train : 2000 val : 3000 test): `n` train pairs (default 2500), 0.4 n val pairs, 0.6 n test
images, disjoint faces. Written: `train|val/{blur,original}/<id>.jpg`, `test/blur/<id>.jpg`,
`test/original_truth/<id>.jpg` (the scoring truth, as the synthetic generator writes it) and
`sources.csv` (id, UTKFace file, split, blur kind and its parameters).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from facelab.errors import FacelabError
from facelab.formats.deblur import TRUTH_FOLDER, blurred
from facelab.formats.images import load_rgb, random_ids, save_jpeg
from facelab.progress import progress

# blur strength -> (Gaussian sigma range, motion length range), pixels
BLURS = {"default": ((1.5, 4.0), (7, 21)), "strong": ((2.5, 5.0), (13, 21))}
NOISE = 2.0  # sensor noise, grey levels
VAL_SHARE, TEST_SHARE = 0.4, 0.6  # per train pair: 2000 / 5000 and 3000 / 5000 in the challenge


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line of `length` pixels through the kernel's centre at `angle` degrees."""
    size = length if length % 2 else length + 1
    kernel = np.zeros((size, size), np.float32)
    c, r = (size - 1) / 2, (length - 1) / 2
    dx, dy = r * np.cos(np.deg2rad(angle)), r * np.sin(np.deg2rad(angle))
    shift = 4  # sub-pixel end points (cv2 fixed point) so short diagonals are not jagged
    start = (round((c - dx) * 2 ** shift), round((c - dy) * 2 ** shift))
    end = (round((c + dx) * 2 ** shift), round((c + dy) * 2 ** shift))
    cv2.line(kernel, start, end, 1.0, thickness=1, lineType=cv2.LINE_AA, shift=shift)
    return kernel / kernel.sum()


def random_blur(image: np.ndarray, rng: np.random.Generator, blur: str = "default") -> tuple[np.ndarray, dict]:
    """One seeded blur (of strength `blur`, a BLURS key) of an RGB uint8 image, with sensor noise;
    returns it and its parameters."""
    sigma, length = BLURS[blur]
    if rng.random() < 0.5:
        params = {"kind": "gaussian", "sigma": float(rng.uniform(*sigma)), "length": np.nan, "angle": np.nan}
        soft = blurred(image, params["sigma"])
    else:
        params = {"kind": "motion", "sigma": np.nan, "length": int(rng.integers(length[0], length[1] + 1)),
                  "angle": float(rng.uniform(0, 180))}
        soft = cv2.filter2D(image, -1, motion_kernel(params["length"], params["angle"]), borderType=cv2.BORDER_REFLECT)
    noisy = soft.astype(np.float32) + rng.normal(0, NOISE, soft.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), params


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, blur: str = "default", **_) -> dict:
    """Write the de-blurring layout under `out` from UTKFace; returns counts per split and kind."""
    if blur not in BLURS:
        raise FacelabError(f"--blur '{blur}': not one of {', '.join(BLURS)}")
    source = Path(data_root) / "utkface" / "images"
    files = sorted(p.name for p in source.glob("*.jpg")) if source.is_dir() else []
    if not files:
        raise FacelabError(f"{source}: no UTKFace images (*.jpg) found")
    n = int(n or 2500)
    sizes = {"train": n, "val": max(1, round(VAL_SHARE * n)), "test": max(1, round(TEST_SHARE * n))}
    if sum(sizes.values()) > len(files):
        raise FacelabError(f"n={n} needs {sum(sizes.values())} faces; {source} has {len(files)}")
    rng = np.random.default_rng(seed)
    chosen = [files[i] for i in rng.permutation(len(files))[:sum(sizes.values())]]
    ids = random_ids(rng, len(chosen))
    out, rows, start = Path(out), [], 0
    for split, size in sizes.items():
        for image_id, file in progress(list(zip(ids[start:start + size], chosen[start:start + size])), f"deblur {split}"):
            original = load_rgb(source / file)
            blurry, params = random_blur(original, rng, blur)
            name = f"{image_id}.jpg"
            save_jpeg(blurry, out / split / "blur" / name)
            save_jpeg(original, out / split / ("original" if split != "test" else TRUTH_FOLDER) / name)
            rows.append({"id": image_id, "file": file, "split": split, **params})
        start += size
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "sources.csv", index=False)
    return {"out": str(out), **{split: int((frame["split"] == split).sum()) for split in sizes},
            "kinds": {k: int(v) for k, v in frame["kind"].value_counts().items()}}
