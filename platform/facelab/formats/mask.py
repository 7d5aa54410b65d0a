"""AI Blitz XIII mask-prediction: `ImageID,bbox,masktype` CSVs over `<split>/<ImageID>.jpg`.

Layout: train.csv, val.csv, sample_submission.csv (the test ImageIDs), train/, val/, test/;
512x512 JPEGs, one mask per image. bbox is the text `"[xmin, ymin, xmax, ymax]"` in pixels,
integers separated by ", " (as in the official CSVs); parsed as JSON, never eval.
Read columns: `_file`, `_row`, `image_id`, `path`, `box` (4 float64; NaN in test), `label`
(one of MASK_TYPES; "" in test). Each box must lie inside its image (0 <= xmin < xmax <= width).
Submission predictions: `image_id`, `box`, `label` and optionally `confidence` (with several
rows for an image the most confident is kept); written as `ImageID,bbox,masktype`.
Scored by metrics.detection_ap (`ap50`, `type_accuracy`); a submission holds no confidence,
so every prediction counts with confidence 1.0. The synthetic data also writes
`test_truth.csv` (`ImageID,bbox,masktype`), the truth for scoring a test submission.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats import cartoon
from facelab.formats.base import FILE, Format, ROW, Read, split_sizes, validated
from facelab.formats.images import (ID, check_image, check_image_id, check_label, image_rows, join_submission,
                                    random_ids, save_jpeg, write_keyed_csv)
from facelab.progress import progress

MASK_TYPES = ("surgical", "N95", "KN95", "cloth")
SIZE = 512


def parse_bbox(text: str) -> list[float]:
    """`"[xmin, ymin, xmax, ymax]"` as 4 finite numbers (JSON, never eval)."""
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise FieldError("bbox", f"'{text}' is not a list of 4 numbers") from None
    if (not isinstance(values, list) or len(values) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
        raise FieldError("bbox", f"'{text}' is not a list of 4 numbers")
    return [float(v) for v in values]


def format_bbox(box) -> str:
    """The official text of a box: rounded to whole pixels, `[73, 197, 293, 400]`."""
    return "[" + ", ".join(str(int(round(float(v)))) for v in box) + "]"


def _check_row(record: dict, *, labelled: bool, labels: tuple[str, ...] = MASK_TYPES) -> None:
    check_image_id(record[ID])
    if labelled:
        xmin, ymin, xmax, ymax = parse_bbox(record["bbox"])
        check_label(record["masktype"], "masktype", labels)
        if not (xmin < xmax and ymin < ymax):
            raise FieldError("bbox", f"{record['bbox']} is empty (need xmin < xmax and ymin < ymax)")
    width, height = check_image(record["path"], ID)
    if labelled and not (0 <= xmin and 0 <= ymin and xmax <= width and ymax <= height):
        raise FieldError("bbox", f"{record['bbox']} is outside the {width}x{height} image")


def _parse_batch(batch: pd.DataFrame) -> pd.DataFrame:
    labelled = "masktype" in batch
    out = pd.DataFrame({"_file": batch["_file"], "_row": batch["_row"], "image_id": batch[ID], "path": batch["path"]})
    out["box"] = ([np.array(parse_bbox(t)) for t in batch["bbox"]] if labelled
                  else [np.full(4, np.nan) for _ in range(len(batch))])
    out["label"] = batch["masktype"] if labelled else ""
    return out


def _objects(frame: pd.DataFrame) -> list[tuple[str, list[float], str]]:
    """(image_id, box, label) of every row of a submission-layout CSV; a bad box or type names its row."""
    objects = []
    for record in frame.to_dict("records"):
        try:
            box = parse_bbox(record["bbox"])
            check_label(record["masktype"], "masktype", MASK_TYPES)
        except FieldError as exc:
            raise DataError(BadRow(record[FILE], int(record[ROW]), exc.field, exc.reason)) from None
        objects.append((record[ID], box, record["masktype"]))
    return objects


def draw_mask(image: Image.Image, kind: str, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """A `kind` mask filling exactly `box` (pixels, inclusive corners)."""
    d = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    w, h, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    white = tuple(int(v) for v in rng.integers(225, 256, 3))
    if kind == "surgical":  # light-blue rectangle with pleats
        blue = (int(rng.integers(140, 190)), int(rng.integers(195, 225)), int(rng.integers(230, 256)))
        d.rectangle(box, fill=blue)
        for t in (0.3, 0.5, 0.7):
            d.line([(x0 + 2, y0 + t * h), (x1 - 2, y0 + t * h)], fill=cartoon.mix(blue, (0, 0, 0), 0.25), width=2)
    elif kind == "N95":  # white rounded dome, sometimes a valve
        d.ellipse(box, fill=white, outline=(170, 170, 170))
        if rng.random() < 0.5:
            r = w * 0.1
            d.ellipse((cx + w * 0.12 - r, y0 + 0.55 * h - r, cx + w * 0.12 + r, y0 + 0.55 * h + r), fill=(120, 120, 130))
    elif kind == "KN95":  # white, pointed at the centre seam
        d.polygon([(x0, y0 + 0.3 * h), (cx, y0), (x1, y0 + 0.3 * h), (x1, y0 + 0.7 * h), (cx, y1), (x0, y0 + 0.7 * h)],
                  fill=white, outline=(170, 170, 170))
        d.line([(cx, y0), (cx, y1)], fill=(175, 175, 175), width=2)
    else:  # cloth: a patterned coloured mask
        colour, other = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
        d.rounded_rectangle(box, radius=max(2, int(min(w, h) * 0.2)), fill=colour)
        step = max(6, int(w / rng.integers(5, 9)))
        for y in range(int(y0 + step / 2), int(y1 - step / 3), step):
            for x in range(int(x0 + step / 2), int(x1 - step / 3), step):
                d.ellipse((x - step / 5, y - step / 5, x + step / 5, y + step / 5), fill=other)


class MaskFormat(Format):
    task = "mask"
    synthetic_truth = "test_truth.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False, labels: tuple[str, ...] = MASK_TYPES) -> Read:
        """`labels`: the allowed masktypes; another set (with several rows per image) is the
        multi-face variant of the layout that the mask task also trains on (e.g. the VOC set)."""
        labelled = split != "test"
        rows = image_rows(root, split, [ID, "bbox", "masktype"])
        if not labelled:  # the sample submission's placeholder boxes are not data
            rows = rows.drop(columns=[c for c in ("bbox", "masktype") if c in rows])
        return validated(rows, lambda r: _check_row(r, labelled=labelled, labels=labels),
                         _parse_batch, skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        if "confidence" in predictions:
            predictions = predictions.sort_values("confidence", ascending=False, kind="stable")
            predictions = predictions.drop_duplicates("image_id")
        frame = pd.DataFrame({
            ID: predictions["image_id"].astype(str).to_numpy(),
            "bbox": [format_bbox(b) for b in predictions["box"]],
            "masktype": predictions["label"].to_numpy(),
        })
        return write_keyed_csv(frame, out, template=Path(data) / "sample_submission.csv" if data else None,
                               complete=complete)

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub, ref = join_submission(submission, truth, ["bbox", "masktype"])
        pred = [(*obj, 1.0) for obj in _objects(sub)]
        return metrics.detection_ap(_objects(ref), pred)

    def synthesize(self, out: Path, *, n: int = 200, seed: int = 0) -> Path:
        """512x512 cartoon faces, each wearing one mask over nose, mouth and chin; its type
        shows in shape and colour (surgical: light-blue pleated rectangle, N95: white dome,
        KN95: white and pointed, cloth: coloured with a dot pattern), its bbox is the mask's
        exact extent. Faces vary in size, place and look over a noisy background.
        n train images, about 2n/5 val and 3n/5 test (at least 2 each)."""
        rng = np.random.default_rng(seed)
        out = Path(out)
        sizes = split_sizes(n)
        ids = random_ids(rng, sum(sizes.values()))
        for split, size in sizes.items():
            split_ids, ids = ids[:size], ids[size:]
            rows = []
            for image_id in progress(split_ids, f"mask {split}"):
                kind = MASK_TYPES[rng.integers(len(MASK_TYPES))]
                face = cartoon.random_face(rng, beard=False)
                rx = float(rng.uniform(80, 160))
                ry = rx * face.aspect
                image = cartoon.noise_background(rng, SIZE)
                at = cartoon.draw_face(image, face, rng.uniform(rx + 5, SIZE - rx - 5),
                                       rng.uniform(0.6 * ry, SIZE - 1.1 * ry - 2), rx)
                half = at.rx * rng.uniform(0.75, 0.95)
                box = (int(at.cx - half), int(at.nose_y - rng.uniform(0.1, 0.25) * at.ry),
                       int(at.cx + half), int(min(at.chin_y + rng.uniform(0.0, 0.06) * at.ry, SIZE - 1)))
                draw_mask(image, kind, box, rng)
                save_jpeg(image, out / split / f"{image_id}.jpg")
                rows.append((image_id, format_bbox(box), kind))
            labels = pd.DataFrame(rows, columns=[ID, "bbox", "masktype"])
            if split == "test":
                labels.to_csv(out / "test_truth.csv", index=False)
                labels.assign(bbox="[0, 0, 0, 0]", masktype="").to_csv(out / "sample_submission.csv", index=False)
            else:
                labels.to_csv(out / f"{split}.csv", index=False)
        return out
