"""Helpers shared by the image layouts (age-bins, mask, crowd, deblur).

Images: check that a file exists and decodes (as a FieldError for `validated`), load it as
an RGB array, save a JPEG. Tables: the `<split>.csv` rows of an `<split>/<ImageID>.jpg`
layout with each image's path, and the ImageID-keyed CSVs that these challenges take as
submissions (written in the template's order, joined to the truth when scored).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import FILE, ROW, read_table

ID = "ImageID"
ID_ALPHABET = string.ascii_lowercase + string.digits


# --- images -----------------------------------------------------------------------------

def check_image(path: str | Path, field: str) -> tuple[int, int]:
    """(width, height) of an image that exists and fully decodes; else FieldError(field)."""
    path = Path(path)
    if not path.is_file():
        raise FieldError(field, f"image {path} not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBomb...)
        raise FieldError(field, f"image {path} cannot be decoded ({exc.__class__.__name__}: {exc})") from None


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 array."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def save_jpeg(image: Image.Image | np.ndarray, path: str | Path, quality: int = 95) -> Path:
    """Write an RGB image (PIL or HxWx3 uint8 array) as a JPEG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    image.convert("RGB").save(path, quality=quality)
    return path


def jpeg_names(folder: Path) -> list[str]:
    """The sorted `*.jpg` file names in a folder (none when it is absent)."""
    folder = Path(folder)
    return sorted(p.name for p in folder.glob("*.jpg")) if folder.is_dir() else []


def random_ids(rng: np.random.Generator, n: int, length: int = 5) -> list[str]:
    """n distinct ids like the challenges' (`93vu1`)."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids["".join(rng.choice(list(ID_ALPHABET), size=length))] = None
    return list(ids)


# --- <split>.csv + <split>/<ImageID>.jpg ------------------------------------------------

def image_rows(root: Path, split: str, columns: Sequence[str]) -> pd.DataFrame:
    """The rows of `<split>.csv` (test: `sample_submission.csv`) with `path` to each image.

    Labelled splits must hold `columns`; test only needs ImageID. Columns stay text.
    """
    root = Path(root).resolve()
    labelled = split != "test"
    table = read_table(root / (f"{split}.csv" if labelled else "sample_submission.csv"),
                       columns if labelled else [ID], malformed="mark")
    frame = table.to_pandas()
    frame["path"] = [str(root / split / f"{image_id}.jpg") for image_id in frame[ID]]
    return frame


def check_image_id(image_id: str) -> None:
    if not image_id or "/" in image_id or "\\" in image_id or image_id.startswith("."):
        raise FieldError(ID, f"'{image_id}' is not an image id")


def check_label(value: str, field: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise FieldError(field, f"'{value}' is not one of {', '.join(allowed)}")


# --- ImageID-keyed submission CSVs ------------------------------------------------------

def write_keyed_csv(frame: pd.DataFrame, out: Path, *, template: Path | None = None, complete: bool = True) -> Path:
    """Write `frame` (ImageID first) as a CSV. With a template, in its order, and each of its
    ImageIDs must have a row in `frame`: a CSV (the sample submission; a missing id names its
    line) or a folder of `<ImageID>.jpg` (sorted; a missing id names its 1-based index); with
    `complete=False` the template's ids without a row are left out."""
    out = Path(out)
    if frame[ID].duplicated().any():
        dup = frame[ID][frame[ID].duplicated()].iloc[0]
        raise DataError(BadRow(str(out), 0, ID, f"more than one prediction for ImageID '{dup}'"))
    template = Path(template) if template is not None else None
    if template is not None and (template.is_file() or template.is_dir()):
        if template.is_dir():
            wanted = pd.Series([n[:-4] for n in jpeg_names(template)], dtype=str)
            lines = np.arange(1, len(wanted) + 1)
        else:
            rows = read_table(template, [ID], malformed="raise" if complete else "skip").to_pandas()
            wanted, lines = rows[ID], rows[ROW].to_numpy()
        missing = ~wanted.isin(frame[ID])
        if not complete:
            wanted = wanted[~missing].reset_index(drop=True)
        elif missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise DataError(BadRow(str(template), int(lines[i]), ID,
                                   f"no prediction for ImageID '{wanted[i]}' ({int(missing.sum())} missing)"))
        frame = frame.set_index(ID).loc[list(wanted)].reset_index()
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out


def _read_keyed(path: Path, what: str, columns: Sequence[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(BadRow(str(path), 0, "-", f"{what} not found"))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for name in (ID, *columns):
        if name not in frame:
            raise DataError(BadRow(str(path), 1, name, f"missing column (found {list(frame.columns)})"))
    frame[ROW] = np.arange(2, len(frame) + 2)
    frame[FILE] = str(path)
    return frame


def join_submission(submission: Path, truth: Path, columns: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both CSVs as text, the submission in the truth's ImageID order (`_row` keeps each
    submission row's own line number). A duplicate, missing or unknown ImageID is a DataError."""
    sub = _read_keyed(submission, "submission", columns)
    ref = _read_keyed(truth, "truth", columns)
    dup = sub[ID].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(BadRow(str(submission), i + 2, ID, f"ImageID '{sub[ID][i]}' appears twice"))
    extra = ~sub[ID].isin(ref[ID])
    if extra.any():
        i = int(np.flatnonzero(extra)[0])
        raise DataError(BadRow(str(submission), i + 2, ID, f"ImageID '{sub[ID][i]}' is not in the truth"))
    missing = ~ref[ID].isin(sub[ID])
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(BadRow(str(submission), 0, ID, f"no row for ImageID '{ref[ID][i]}' (truth row {i + 2}; "
                                                       f"{int(missing.sum())} missing)"))
    return sub.set_index(ID).loc[list(ref[ID])].reset_index(), ref


def first_bad(frame: pd.DataFrame, mask: np.ndarray | pd.Series, field: str, reason) -> None:
    """Raise a DataError for the first row of `frame` where `mask` holds; `reason(row)` says why."""
    mask = np.asarray(mask, bool)
    if mask.any():
        row = frame.iloc[int(np.flatnonzero(mask)[0])]
        raise DataError(BadRow(row[FILE], int(row[ROW]), field, reason(row)))
