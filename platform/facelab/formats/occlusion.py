"""Face occlusion (IDEMIA x Telecom Paris, 2024): space-delimited CSVs over 224x224 face crops.

Files: `train_100K.csv` (`filename FaceOcclusion gender`) and `test_students.csv` (`filename`;
label columns, if present, may be empty), images under `crops_100K/<filename>`.

Read columns: `_file`, `_row`, `filename`, `path` (absolute image path), `occlusion` and
`gender` (float; NaN where the file has no value: a float NaN, not a null, so test it with
`np.isnan`, not with pandas' `isna` on arrow-backed frames).

Missing labels: the official train file holds rows whose FaceOcclusion or gender is NaN. They
are *not* bad rows: the reader keeps them as NaN so row counts match the official file, and
`drop_unlabelled` removes them for training (and says how many). Text that is not a number,
a value outside [0, 1], a missing or unreadable image are bad rows.

Submission predictions: a DataFrame with `occlusion` (and optionally `filename`, which
reorders the rows into test order when `data` is given); written as one column, no header,
no index. Score: the challenge's fairness score (`err_f`, `err_m`, `score`, lower is better).
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import Format, Read, read_table, require_file, validated
from facelab.progress import progress

FILES = {"train": "train_100K.csv", "test": "test_students.csv"}
IMAGES = "crops_100K"
LABELS = ("FaceOcclusion", "gender")
SIZE = 224
_MISSING = ("", "nan", "na", "null", "none")


def parse_fraction(text: str | None, field: str) -> float:
    """A cell holding a number in [0, 1]; empty or `nan` is NaN (an unlabelled row)."""
    text = (text or "").strip()
    if text.lower() in _MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise FieldError(field, f"'{text}' is not a number") from None
    if math.isnan(value):
        return math.nan
    if not 0.0 <= value <= 1.0:
        raise FieldError(field, f"{text} is outside [0, 1]")
    return value


def _check_image(images: Path, filename: str) -> None:
    from PIL import Image

    name = PurePosixPath(filename)
    if not filename or name.is_absolute() or ".." in name.parts:
        raise FieldError("filename", f"'{filename}' is not a relative image path")
    path = images / filename
    if not path.is_file():
        raise FieldError("filename", f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decoded whole: verify() passes a truncated JPEG
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds (OSError, SyntaxError, DecompressionBomb...)
        raise FieldError("filename", f"unreadable image {path}: {exc}") from None


def _check_row(record: dict, images: Path) -> None:
    _check_image(images, record["filename"])
    for column in LABELS:
        parse_fraction(record.get(column), column)


def _parse_batch(batch: pd.DataFrame, images: Path) -> pa.Table:
    columns = {name: pa.array(batch[name]) for name in ("_file", "_row", "filename")}
    columns["path"] = pa.array([str(images / f) for f in batch["filename"]], pa.string())
    for column, name in zip(LABELS, ("occlusion", "gender")):
        cells = batch[column] if column in batch else [""] * len(batch)
        # pyarrow keeps NaN from a numpy array (from pandas it would become null)
        columns[name] = pa.array(np.array([parse_fraction(c, column) for c in cells], np.float64))
    return pa.table(columns)


def drop_unlabelled(dataset: "ray.data.Dataset") -> tuple["ray.data.Dataset", int]:  # noqa: F821
    """The rows with both targets (for training), and how many rows had a NaN target."""
    import pyarrow.compute as pc

    def labelled(table: pa.Table) -> pa.Table:
        return table.filter(pc.invert(pc.or_(pc.is_nan(table["occlusion"]), pc.is_nan(table["gender"]))))

    kept = dataset.map_batches(labelled, batch_format="pyarrow").materialize()
    return kept, dataset.count() - kept.count()


def _fractions(cells, column: str, source: str) -> np.ndarray:
    """A label column of a whole file, or a DataError naming its first bad row."""
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        try:
            out[i] = parse_fraction(cell, column)
        except FieldError as exc:
            raise DataError(BadRow(source, i + 2, exc.field, exc.reason)) from None
    return out


def _numbers(values, source: str, field: str, first_row: int) -> np.ndarray:
    """Finite floats, or a DataError naming the first bad row of `source`."""
    out = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        i = int(bad[0])
        raise DataError(BadRow(source, i + first_row, field, f"'{values[i]}' is not a finite number"))
    return out


class OcclusionFormat(Format):
    task = "occlusion"
    splits = ("train", "test")
    synthetic_truth = "test_truth.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        if split not in FILES:
            raise DataError(BadRow(str(root), 0, "-", f"unknown split '{split}' (have {', '.join(FILES)})"))
        root = Path(root).resolve()
        table = read_table(root / FILES[split], ["filename", *LABELS] if split == "train" else ["filename"],
                           delimiter=" ", malformed="mark")
        images = root / IMAGES
        return validated(
            table,
            lambda r: _check_row(r, images),
            lambda b: _parse_batch(b, images),
            skip_bad=skip_bad,
        )

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        out = Path(out)
        values = list(predictions["occlusion"])
        if data is not None:
            test_path = Path(data) / FILES["test"]
            order = read_table(test_path, ["filename"], delimiter=" ",
                               malformed="raise" if complete else "skip").column("filename").to_pylist()
            if "filename" in predictions:
                by_name = dict(zip(predictions["filename"], values))
                order = order if complete else [name for name in order if name in by_name]
                for i, name in enumerate(order):
                    if name not in by_name:
                        raise DataError(BadRow(str(test_path), i + 2, "filename", f"no prediction for '{name}'"))
                values = [by_name[name] for name in order]
            elif len(values) != len(order):
                raise DataError(BadRow(str(test_path), 0, "filename",
                                       f"{len(order)} test rows but {len(values)} predictions"))
        numbers = _numbers(values, "predictions", "occlusion", 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{v!r}\n" for v in numbers.tolist()))
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        lines = Path(require_file(submission, "submission")).read_text().splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        pred = _numbers([line.strip() for line in lines], str(submission), "prediction", 1)
        ref = read_table(truth, ["filename", *LABELS], delimiter=" ").to_pandas()
        labels = {column: _fractions(ref[column], column, str(truth)) for column in LABELS}
        if len(pred) != len(ref):
            raise DataError(BadRow(str(submission), min(len(pred), len(ref)) + 1, "prediction",
                                   f"{len(pred)} predictions but {truth} has {len(ref)} rows"))
        return metrics.fairness_score(pred, labels["FaceOcclusion"], labels["gender"])

    def synthesize(self, out: Path, *, n: int = 200, seed: int = 0) -> Path:
        """Drawn faces with a coloured occluder; FaceOcclusion is the exact covered fraction.

        A skin-toned face ellipse with eyes and mouth on a noisy background; men (soft gender
        label near 1) have a darker jaw, women longer hair at the sides. An occluder (box or
        disc) covers part of the face in 85% of images; its covered share of face pixels is the
        target (mostly 0..0.5). About 15% of images are grey (the `database2` source), 3% of
        train rows have a NaN label. Writes train_100K.csv, test_students.csv (filename only),
        test_truth.csv (labelled, train layout) and crops_100K/.
        """
        rng = np.random.default_rng(seed)
        out = Path(out)
        sizes = {"train": n, "test": max(n * 3 // 10, 8)}
        counter = 0
        for split, size in sizes.items():
            rows = []
            for _ in progress(range(size), f"occlusion {split}"):
                counter += 1
                name = _synthetic_name(rng, counter)
                image, occlusion, gender = _draw_face(rng)
                path = out / IMAGES / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if name.startswith("database2/"):
                    image = image.convert("L").convert("RGB")
                image.save(path, quality=90)
                rows.append({"filename": name, "FaceOcclusion": round(occlusion, 6), "gender": round(gender, 6)})
            frame = pd.DataFrame(rows)
            if split == "train":
                unlabelled = rng.random(size) < 0.03
                frame.loc[unlabelled, rng.choice(list(LABELS))] = np.nan
                frame.to_csv(out / FILES["train"], sep=" ", index=False)
            else:
                frame[["filename"]].to_csv(out / FILES["test"], sep=" ", index=False)
                frame.to_csv(out / "test_truth.csv", sep=" ", index=False)
        return out


def _synthetic_name(rng: np.random.Generator, i: int) -> str:
    source = rng.choice(3, p=[0.6, 0.15, 0.25])
    if source == 2:
        person = "".join(rng.choice(list("0123456789abcdefghijklmnopqrstuvwxyz"), 5))
        return f"database3/database3/m.0{person}/{i}-FaceId-0_align.jpg"
    return f"database{source + 1}/img{i:08d}.jpg"


def _draw_face(rng: np.random.Generator):
    """One synthetic crop, its occluded fraction of face pixels and its soft gender label."""
    from PIL import Image, ImageDraw

    male = rng.random() < 0.6
    gender = float(np.clip(rng.normal(0.88 if male else 0.12, 0.08), 0.0, 1.0))
    background = rng.integers(0, 256, 3)
    pixels = np.clip(background + rng.normal(0, 18, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    cx, cy = SIZE / 2 + rng.normal(0, 6, 2)
    rx, ry = rng.uniform(58, 72), rng.uniform(78, 92)
    face_box = (cx - rx, cy - ry, cx + rx, cy + ry)
    skin = tuple(int(v) for v in np.array([224, 172, 140]) * rng.uniform(0.45, 1.1))
    hair = tuple(int(v) for v in rng.integers(10, 120, 3))
    if not male:  # long hair behind the face
        draw.rectangle((cx - rx - 18, cy - ry - 10, cx + rx + 18, cy + ry * 0.8), fill=hair)
    draw.ellipse(face_box, fill=skin)
    if male:  # darker jaw
        jaw = tuple(int(v * 0.7) for v in skin)
        draw.chord((cx - rx, cy - ry * 0.1, cx + rx, cy + ry), 0, 180, fill=jaw)
    for side in (-1, 1):
        draw.ellipse((cx + side * rx * 0.4 - 8, cy - ry * 0.25 - 5, cx + side * rx * 0.4 + 8, cy - ry * 0.25 + 5),
                     fill=(30, 30, 30))
    draw.ellipse((cx - rx * 0.35, cy + ry * 0.45 - 6, cx + rx * 0.35, cy + ry * 0.45 + 6), fill=(150, 60, 60))
    face_img = Image.new("1", (SIZE, SIZE))
    ImageDraw.Draw(face_img).ellipse(face_box, fill=1)
    face = np.array(face_img)
    occlusion = 0.0
    if rng.random() < 0.85:
        mask_img = Image.new("1", (SIZE, SIZE))
        w, h = rng.uniform(20, 1.5 * rx), rng.uniform(20, 1.1 * ry)
        x, y = cx + rng.uniform(-rx, rx) - w / 2, cy + rng.uniform(-ry, ry) - h / 2
        shape = ImageDraw.Draw(mask_img).rectangle if rng.random() < 0.6 else ImageDraw.Draw(mask_img).ellipse
        shape((x, y, x + w, y + h), fill=1)
        mask = np.array(mask_img)
        colour = np.array(rng.integers(0, 256, 3), np.uint8)
        pixels = np.array(image)
        pixels[mask] = colour
        image = Image.fromarray(pixels)
        occlusion = float((mask & face).sum() / face.sum())
    return image, occlusion, gender
