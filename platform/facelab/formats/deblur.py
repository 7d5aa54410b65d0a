"""AI Blitz XIII face-de-blurring: pairs of blurred and original JPEGs with the same names.

Layout: `train/{blur,original}/*.jpg`, `val/{blur,original}/*.jpg`, `test/blur/*.jpg`.
Read columns: `_file` (the blur image, or the original when its blur is absent), `_row`
(1-based index in the split's sorted file names), `name`, `blur_path`, `original_path`
("" in test). In train and val every name needs both images, decoding, of the same size.
Submission predictions: `name`, `image` (HxWx3 uint8); written as `<out>/original/<name>`
(JPEG quality 95). Scored by mean SSIM, then mean PSNR, over the truth's images: `score`
takes the submission folder (or the folder holding its `original/`) and a folder of truth
originals. Synthetic data is 128x128 (the real size, about 512x512, is unconfirmed; small
keeps tests fast) and also writes `test/original_truth/`, the truth for scoring.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats import cartoon
from facelab.formats.base import Format, Read, validated
from facelab.formats.images import check_image, jpeg_names, load_rgb, random_ids, save_jpeg
from facelab.progress import progress

SYNTH_SIZE = 128
TRUTH_FOLDER = "original_truth"


def _check_row(record: dict, *, paired: bool) -> None:
    blur = check_image(record["blur_path"], "blur")
    if paired:
        original = check_image(record["original_path"], "original")
        if blur != original:
            raise FieldError("original", f"size {original[0]}x{original[1]} differs from the blur image's "
                                         f"{blur[0]}x{blur[1]}")


def _image_folder(folder: Path) -> Path:
    folder = Path(folder)
    return folder / "original" if (folder / "original").is_dir() else folder


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of standard deviation `sigma` pixels."""
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


class DeblurFormat(Format):
    task = "deblur"
    synthetic_truth = "test/original_truth"
    submission_name = "submission"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        folder = Path(root).resolve() / split
        paired = split != "test"
        blur = jpeg_names(folder / "blur")
        names = sorted(set(blur) | set(jpeg_names(folder / "original"))) if paired else blur
        if not names:
            raise DataError(BadRow(str(folder / "blur"), 0, "-", "no *.jpg images found"))
        have_blur = set(blur)
        rows = pd.DataFrame({
            "_file": [str(folder / ("blur" if n in have_blur else "original") / n) for n in names],
            "_row": np.arange(1, len(names) + 1),
            "name": names,
            "blur_path": [str(folder / "blur" / n) for n in names],
            "original_path": [str(folder / "original" / n) if paired else "" for n in names],
        })
        return validated(rows, lambda r: _check_row(r, paired=paired), skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        folder = Path(out) / "original"
        if data is not None:
            expected = jpeg_names(Path(data) / "test" / "blur")
            missing = sorted(set(expected) - set(predictions["name"]))
            if missing and complete:
                raise DataError(BadRow(str(Path(data) / "test" / "blur" / missing[0]), expected.index(missing[0]) + 1,
                                       "name", f"no restored image ({len(missing)} missing)"))
        for name, image in zip(predictions["name"], predictions["image"]):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"{name}: a restored image must be HxWx3 uint8, got {image.shape} {image.dtype}")
            save_jpeg(image, folder / name, quality=95)
        return folder

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        restored, originals = _image_folder(submission), _image_folder(truth)
        names = jpeg_names(originals)
        if not names:
            raise DataError(BadRow(str(originals), 0, "-", "no truth images found"))
        scores = []
        for i, name in enumerate(names, start=1):
            path = restored / name
            if not path.is_file():
                raise DataError(BadRow(str(path), i, "image", "restored image not found"))
            try:
                image = load_rgb(path)
            except Exception as exc:
                raise DataError(BadRow(str(path), i, "image", f"cannot be decoded ({exc})")) from None
            original = load_rgb(originals / name)
            if image.shape != original.shape:
                raise DataError(BadRow(str(path), i, "image", f"size {image.shape[1]}x{image.shape[0]} differs from "
                                                              f"the original's {original.shape[1]}x{original.shape[0]}"))
            scores.append(metrics.image_quality(image, original))
        return {key: float(np.mean([s[key] for s in scores])) for key in ("ssim", "psnr")}

    def synthesize(self, out: Path, *, n: int = 200, seed: int = 0) -> Path:
        """128x128 cartoon faces over noisy backgrounds, blurred with a Gaussian of sigma
        0.8..3 pixels plus slight sensor noise. n train pairs, about 2n/5 val and 3n/5 test
        (at least 2 each); the test originals go to `test/original_truth/`."""
        rng = np.random.default_rng(seed)
        out = Path(out)
        sizes = {"train": n, "val": max(n * 2 // 5, 2), "test": max(n * 3 // 5, 2)}
        ids = random_ids(rng, sum(sizes.values()))
        for split, size in sizes.items():
            for image_id in progress(ids[:size], f"deblur {split}"):
                original = np.asarray(cartoon.portrait(rng, cartoon.random_face(rng), SYNTH_SIZE, scale=0.32,
                                                       jitter=0.08)[0])
                blur = blurred(original, rng.uniform(0.8, 3.0)).astype(np.int16)
                blur = np.clip(blur + rng.normal(0, 2, blur.shape), 0, 255).astype(np.uint8)
                name = f"{image_id}.jpg"
                save_jpeg(blur, out / split / "blur" / name)
                save_jpeg(original, out / split / ("original" if split != "test" else TRUTH_FOLDER) / name)
            ids = ids[size:]
        return out
