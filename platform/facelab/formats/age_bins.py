"""AI Blitz XIII age-prediction: `ImageID,age` CSVs over `<split>/<ImageID>.jpg` images.

Layout: train.csv, val.csv, sample_submission.csv (the test ImageIDs), train/, val/, test/.
Read columns: `_file`, `_row`, `image_id`, `path` (the JPEG; decoded later by the task),
`label` (one of AGE_BINS; "" in test). Every image is checked to exist and decode.
Submission predictions: a DataFrame with `image_id`, `label`; written as `ImageID,age` in
sample_submission.csv's order when `data` is given.
Scored by weighted F1, then accuracy, joined on ImageID. The synthetic data also writes
`test_truth.csv` (`ImageID,age`), the truth for scoring a test submission.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelab import metrics
from facelab.formats import cartoon
from facelab.formats.base import Format, Read, split_sizes, validated
from facelab.formats.images import (ID, check_image, check_image_id, check_label, first_bad, image_rows,
                                    join_submission, random_ids, save_jpeg, write_keyed_csv)
from facelab.progress import progress

AGE_BINS = tuple(f"{lo}-{lo + 10}" for lo in range(0, 100, 10))
SIZE = 512


def age_bin(age: float) -> str:
    """The Blitz bin of an age in years (a predicted age is floored); 100 and over is `90-100`."""
    return AGE_BINS[min(max(int(np.floor(float(age))), 0) // 10, len(AGE_BINS) - 1)]


def _check_row(record: dict, *, labelled: bool) -> None:
    check_image_id(record[ID])
    if labelled:
        check_label(record["age"], "age", AGE_BINS)
    check_image(record["path"], ID)


def _parse_batch(batch: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "_file": batch["_file"], "_row": batch["_row"], "image_id": batch[ID], "path": batch["path"],
        "label": batch["age"] if "age" in batch else "",
    })


def aged_face(rng: np.random.Generator, age: float) -> cartoon.Face:
    """A random face that shows its age noisily: grey hair, forehead lines, balding,
    smaller eyes and a longer face with the years."""
    t = age / 100
    grey = float(np.clip(1.4 * t - 0.45 + rng.normal(0, 0.15), 0, 1))
    face = cartoon.random_face(rng)
    return face.vary(
        hair=cartoon.mix(face.hair, (205, 205, 205), grey),
        wrinkles=int(np.clip(round((age - 25) / 11 + rng.normal(0, 1)), 0, 5)),
        hair_style=0 if rng.random() < 0.45 * max(0.0, t - 0.3) else face.hair_style,
        eye_size=float(np.clip(0.19 - 0.08 * t + rng.normal(0, 0.015), 0.07, 0.22)),
        aspect=float(np.clip(1.08 + 0.3 * t + rng.normal(0, 0.06), 1.0, 1.5)),
    )


class AgeBinsFormat(Format):
    task = "age-bins"
    synthetic_truth = "test_truth.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        labelled = split != "test"
        rows = image_rows(root, split, [ID, "age"])
        return validated(rows, lambda r: _check_row(r, labelled=labelled), _parse_batch,
                         skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        frame = pd.DataFrame({ID: predictions["image_id"].astype(str), "age": list(predictions["label"])})
        return write_keyed_csv(frame, out, template=Path(data) / "sample_submission.csv" if data else None,
                               complete=complete)

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub, ref = join_submission(submission, truth, ["age"])
        for frame in (sub, ref):
            first_bad(frame, ~frame["age"].isin(AGE_BINS), "age", lambda r: f"'{r['age']}' is not an age bin")
        return metrics.classification(ref["age"].tolist(), sub["age"].tolist())

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        from facelab import plots

        Path(out).mkdir(parents=True, exist_ok=True)
        sub, ref = join_submission(submission, truth, ["age"])
        return [plots.confusion_matrix_png(ref["age"], sub["age"], AGE_BINS, Path(out) / "confusion_matrix.png",
                                           title=f"age-bins: {Path(submission).name}")]

    def synthesize(self, out: Path, *, n: int = 200, seed: int = 0) -> Path:
        """512x512 cartoon faces whose age bin shows in hair greyness, forehead lines, balding,
        eye size and face length, all noisy; 10% of labels are replaced by a random bin.
        n train images, about 2n/5 val and 3n/5 test (at least 2 each)."""
        rng = np.random.default_rng(seed)
        out = Path(out)
        sizes = split_sizes(n)
        ids = random_ids(rng, sum(sizes.values()))
        for split, size in sizes.items():
            split_ids, ids = ids[:size], ids[size:]
            bins = rng.integers(0, len(AGE_BINS), size)
            for image_id, b in progress(zip(split_ids, bins), f"age-bins {split}", size):
                image, _ = cartoon.portrait(rng, aged_face(rng, 10 * b + rng.uniform(0, 10)), SIZE, scale=0.27)
                save_jpeg(image, out / split / f"{image_id}.jpg")
            noisy = np.where(rng.random(size) < 0.1, rng.integers(0, len(AGE_BINS), size), bins)
            labels = pd.DataFrame({ID: split_ids, "age": [AGE_BINS[b] for b in noisy]})
            if split == "test":
                labels.to_csv(out / "test_truth.csv", index=False)
                labels.assign(age="").to_csv(out / "sample_submission.csv", index=False)
            else:
                labels.to_csv(out / f"{split}.csv", index=False)
        return out
