"""Face synthesis (seed 002, HexaFace section 3.1/5.5): a GAN trained on UTKFace faces.

Data: a UTKFace folder read in place, exactly as facelab.formats.utkface reads it (labels from
labels.csv or the file names, the same seeded 70/15/15 split). The GAN trains on every face
outside UTKFace's val split ("train" = its train + test splits); "val" = its val split, the
held-out real faces that each epoch's samples are compared with. "test" is what a submission
generates: one row per held-out real face (`seed` 0..N-1), so that samples and real faces are
measured in sets of the same size.
Submission: a folder of PNG samples `sample_<seed>.png`, `samples.csv` (`file,seed`) and
`grid.png` (the first 64). Score (`facelab score --task synth --submission DIR --truth DATA`,
truth the UTKFace folder or a file in it): the fraction of samples in which the dlib HOG and the
mediapipe detectors find a face, the same for the held-out real faces at the samples' size, and,
when the caller hands `score` a gender head (`facelab score` hands it the promoted `age-gender`
model's), the share of women among the samples and among the held-out real faces by that head,
next to the training set's true share (see `facelab.synth_measure`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from facelab.errors import BadRow, DataError
from facelab.formats.base import FILE, ROW, Read
from facelab.formats.utkface import UTKFaceFormat, labels_table, split_names

SAMPLES_CSV = "samples.csv"
GRID_PNG = "grid.png"
GRID_SAMPLES = 64


def sample_name(seed: int) -> str:
    return f"sample_{int(seed):06d}.png"


def grid(images: list[np.ndarray], columns: int = 8, gap: int = 2) -> np.ndarray:
    """Equal-sized HxWx3 uint8 images tiled row by row on a white background."""
    height, width = images[0].shape[:2]
    rows = -(-len(images) // columns)
    columns = min(columns, len(images))
    out = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        y, x = gap + (i // columns) * (height + gap), gap + (i % columns) * (width + gap)
        out[y:y + height, x:x + width] = image
    return out


def write_samples(pngs: list[bytes], seeds: list[int], out: Path) -> Path:
    """A submission folder: one PNG per sample, samples.csv and grid.png of the first 64."""
    import io

    from PIL import Image

    from facelab.uploads import encode_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for png, seed in zip(pngs, seeds):
        (out / sample_name(seed)).write_bytes(png)
    pd.DataFrame({"file": [sample_name(s) for s in seeds], "seed": list(seeds)}).to_csv(out / SAMPLES_CSV, index=False)
    first = [np.asarray(Image.open(io.BytesIO(p)).convert("RGB")) for p in pngs[:GRID_SAMPLES]]
    if first:
        (out / GRID_PNG).write_bytes(encode_png(grid(first)))
    return out


def read_samples(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    """(file names, RGB arrays) of a samples folder, from its samples.csv (a missing or
    unreadable sample names its row)."""
    from PIL import Image

    folder = Path(folder)
    listing = folder / SAMPLES_CSV
    if not listing.is_file():
        raise DataError(BadRow(str(listing), 0, "-", "samples.csv not found: not a synth samples folder"))
    files = pd.read_csv(listing, dtype=str, keep_default_na=False)
    if "file" not in files:
        raise DataError(BadRow(str(listing), 1, "file", f"missing column (found {list(files.columns)})"))
    images = []
    for row, name in enumerate(files["file"], start=2):
        try:
            with Image.open(folder / Path(name).name) as im:
                images.append(np.asarray(im.convert("RGB")))
        except OSError as exc:
            raise DataError(BadRow(str(listing), row, "file", f"{name}: {exc}")) from None
    return list(files["file"]), images


def data_folder(truth: Path) -> Path:
    """The UTKFace folder of a truth given as the folder or as a file in it."""
    truth = Path(truth)
    return truth if truth.is_dir() else truth.parent


class SynthFormat(UTKFaceFormat):
    task = "synth"
    submission_name = "samples"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        if split == "test":
            return Read(self._seeds(Path(root)))
        if split == "val":
            return super().read(root, "val", skip_bad=skip_bad)
        if split != "train":
            raise DataError(BadRow(str(root), 0, "-", f"unknown split '{split}' (have {', '.join(self.splits)})"))
        parts = [UTKFaceFormat.read(self, root, part, skip_bad=skip_bad) for part in ("train", "test")]
        return Read(parts[0].dataset.union(parts[1].dataset), parts[0].bad + parts[1].bad)

    def _seeds(self, root: Path):
        """One generation row per held-out (val) face: `seed` 0..N-1, `n` 1 image each."""
        import ray

        files = labels_table(root).column("file").to_pylist()
        count = int((split_names(files) == "val").sum())
        return ray.data.from_arrow(pa.table({
            FILE: pa.array([str(root)] * count), ROW: pa.array(np.arange(1, count + 1), pa.int64()),
            "seed": pa.array(np.arange(count), pa.int64()), "n": pa.array(np.ones(count, np.int64))}))

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        return write_samples(list(predictions["png"]), [int(s) for s in predictions["seed"]], Path(out))

    def score(self, submission: Path, truth: Path, *, gender=None) -> dict[str, float]:
        """The measure of `facelab.synth_measure`; `gender`: its `GenderHead` (or why there is none)."""
        measured = _measured(str(submission), str(data_folder(truth)), gender)
        return {k: v for k, v in measured.items() if isinstance(v, float)}

    def plots(self, submission: Path, truth: Path, out: Path, *, gender=None) -> list[Path]:
        from facelab.synth_measure import measure_png

        Path(out).mkdir(parents=True, exist_ok=True)
        measured = _measured(str(submission), str(data_folder(truth)), gender)
        return [measure_png(measured, Path(out) / "synth_measure.png")]


@functools.lru_cache(maxsize=2)
def _measured(submission: str, data: str, gender) -> dict:
    """One measurement per (samples, data, gender head) triple, shared by score and plots."""
    from facelab.synth_measure import measure

    return measure(Path(submission), Path(data), gender=gender)
