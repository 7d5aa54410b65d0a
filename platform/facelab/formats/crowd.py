"""AI Blitz XIII face-recognition: find the missing face in its crowd.

Layout (test only; no training labels): `missing/<ImageID>.jpg` holds one face and
`target/<ImageID>.jpg` (same name) a 2160x2160 crowd, a 10x10 grid of 216x216 tiles;
face k (0..99) is at row k // 10, column k % 10 (`tiles` cuts a crowd into that order).
Read columns: `_file` (the missing image), `_row` (1-based index in the sorted ImageIDs),
`image_id`, `missing_path`, `target_path`; both images must decode, the crowd be 2160x2160.
Submission predictions: `image_id`, `target` (int 0..99); written as `ImageID,target`
(ImageID without `.jpg`), in the sorted order of `data/missing` when `data` is given.
Scored by accuracy. The synthetic data also writes `truth.csv` (`ImageID,target`) beside
`missing/` and `target/`: the truth for scoring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelab.errors import FieldError
from facelab.formats import cartoon
from facelab.formats.base import Format, Read, validated
from facelab.formats.images import (ID, check_image, first_bad, jpeg_names, join_submission, random_ids,
                                    save_jpeg, write_keyed_csv)
from facelab.progress import progress

GRID = 10
TILE = 216
SIZE = GRID * TILE  # 2160
N_FACES = GRID * GRID


def tiles(target_image: np.ndarray) -> np.ndarray:
    """A 2160x2160(xC) crowd as its 100 tiles, (100, 216, 216, C), tile k = row k//10, col k%10."""
    image = np.asarray(target_image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[:2] != (SIZE, SIZE):
        raise ValueError(f"a crowd is {SIZE}x{SIZE}, got {image.shape[1]}x{image.shape[0]}")
    grid = image.reshape(GRID, TILE, GRID, TILE, image.shape[2]).transpose(0, 2, 1, 3, 4)
    return grid.reshape(N_FACES, TILE, TILE, image.shape[2])


def _check_row(record: dict) -> None:
    check_image(record["missing_path"], "missing")
    size = check_image(record["target_path"], "target")
    if size != (SIZE, SIZE):
        raise FieldError("target", f"crowd {record['target_path']} is {size[0]}x{size[1]}, not {SIZE}x{SIZE}")


def _targets(frame: pd.DataFrame) -> np.ndarray:
    """The `target` column as ints; anything but 0..99 names its row."""
    text = frame["target"].str.strip()
    ok = text.str.fullmatch(r"\d{1,2}")
    first_bad(frame, ~ok, "target", lambda r: f"'{r['target']}' is not a face index 0..{N_FACES - 1}")
    return text.astype(int).to_numpy()


def _shaded(image, light: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness `light` and a colour cast: the lighting of a second photo."""
    cast = rng.uniform(0.93, 1.07, 3)
    return np.clip(np.asarray(image, np.float32) * light * cast, 0, 255).astype(np.uint8)


class CrowdFormat(Format):
    task = "crowd"
    synthetic_truth = "truth.csv"
    splits = ("test",)

    def read(self, root: Path, split: str = "test", *, skip_bad: bool = False) -> Read:
        if split not in self.splits:
            raise ValueError(f"the crowd layout has only a test split, not '{split}'")
        root = Path(root).resolve()
        names = sorted(set(jpeg_names(root / "missing")) | set(jpeg_names(root / "target")))
        rows = pd.DataFrame({
            "_file": [str(root / "missing" / n) for n in names],
            "_row": np.arange(1, len(names) + 1),
            "image_id": [n[:-4] for n in names],
            "missing_path": [str(root / "missing" / n) for n in names],
            "target_path": [str(root / "target" / n) for n in names],
        })
        return validated(rows, _check_row, skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        targets = np.asarray(predictions["target"], dtype=int)
        if ((targets < 0) | (targets >= N_FACES)).any():
            raise ValueError(f"targets must be 0..{N_FACES - 1}")
        frame = pd.DataFrame({ID: predictions["image_id"].astype(str).to_numpy(), "target": targets})
        return write_keyed_csv(frame, out, template=Path(data) / "missing" if data else None, complete=complete)

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub, ref = join_submission(submission, truth, ["target"])
        return {"accuracy": float(np.mean(_targets(sub) == _targets(ref)))}

    def synthesize(self, out: Path, *, n: int = 4, seed: int = 0) -> Path:
        """n crowds of 100 distinct cartoon identities (each a random set of face parameters
        on its own noisy background). The missing face re-renders one of them with a new
        expression, brow, place, size, background and lighting; truth.csv names its tile."""
        rng = np.random.default_rng(seed)
        out = Path(out)
        answers = rng.integers(0, N_FACES, n)
        ids = random_ids(rng, n)
        for image_id, answer in progress(zip(ids, answers), "crowds", len(ids)):
            faces = [cartoon.random_face(rng) for _ in range(N_FACES)]
            crowd = np.zeros((SIZE, SIZE, 3), np.uint8)
            for k, face in enumerate(faces):
                r, c = divmod(k, GRID)
                crowd[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = cartoon.portrait(rng, face, TILE)[0]
            face = faces[answer]
            changed = face.vary(smile=float(np.clip(face.smile + rng.normal(0, 0.5), -1, 1)),
                                brow_tilt=face.brow_tilt + float(rng.normal(0, 0.04)))
            missing, _ = cartoon.portrait(rng, changed, TILE, jitter=0.08)
            save_jpeg(crowd, out / "target" / f"{image_id}.jpg")
            save_jpeg(_shaded(missing, rng.uniform(0.75, 1.2), rng), out / "missing" / f"{image_id}.jpg")
        pd.DataFrame({ID: ids, "target": answers}).to_csv(out / "truth.csv", index=False)
        return out
