"""Face detection on PASCAL VOC folders (seed 002, HexaFace face detection; real data: the Kaggle
face-mask set in `facemask_voc`).

Layout: `images/<name>.<png|jpg|jpeg|bmp|pgm>` and `annotations/<name>.xml`, one VOC `<object>` per
face (`<name>` a label such as with_mask / without_mask, `<bndbox>` xmin ymin xmax ymax in pixels;
`<size>` width and height checked when present). Either directly in the data folder, which is then
every split (the detectors are pretrained: nothing is fitted on the images, tuning only picks one
of a few dozen detector settings, so the same folder serves to choose and to report), or in split
subfolders `val/` and `test/` (what `synthesize` writes). A folder without `annotations/` is
unlabelled: images to run the detector on.

Read columns: `_file` (the annotation, or the image when unlabelled), `_row` (1-based position of
the image in name order), `file` (the image's name in `images/`), `path`, `boxes` (JSON text of
`[[x0, y0, x1, y1], ...]`), `labels` (JSON text of the object names), `width`, `height`.
Submission: `detections.csv` with `file,x0,y0,x1,y1,score`, one row per detected face (an image
with none has no row). Score: against the truth folder's `test/` (or the folder itself): AP at
IoU 0.5 (all-point), precision, recall and F1 of all submitted boxes, the best F1 over score
thresholds, and recall per VOC label.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import FILE, ROW, Format, Read, require_file, validated

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm")
COLUMNS = ("file", "x0", "y0", "x1", "y1", "score")


def split_folder(root: Path, split: str) -> Path:
    """`root/split` when the layout has split subfolders, else `root` itself (every split)."""
    root = Path(root)
    if (root / split / "images").is_dir():
        return root / split
    if (root / "images").is_dir():
        return root
    raise DataError(BadRow(str(root), 0, "-", f"no images/ folder (nor {split}/images/): not a VOC detection layout"))


def parse_voc(path: Path) -> dict:
    """A VOC annotation as {"width", "height", "boxes", "labels"}; FieldError names what is wrong."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FieldError("xml", f"not well-formed XML ({exc})") from None
    if root.tag != "annotation":
        raise FieldError("xml", f"root element is <{root.tag}>, expected <annotation>")
    width, height = (_number(root, f"size/{k}", required=False) for k in ("width", "height"))
    boxes, labels = [], []
    for i, obj in enumerate(root.findall("object")):
        where = f"object[{i + 1}]"
        label = (obj.findtext("name") or "").strip()
        if not label:
            raise FieldError(f"{where}/name", "missing or empty")
        box = [_number(obj, f"bndbox/{k}", where=where) for k in ("xmin", "ymin", "xmax", "ymax")]
        _check_box(box, width, height, where)
        boxes.append(box)
        labels.append(label)
    return {"width": width, "height": height, "boxes": boxes, "labels": labels}


def _number(node, tag: str, *, where: str = "", required: bool = True) -> float | None:
    text = node.findtext(tag)
    field = f"{where}/{tag}" if where else tag
    if text is None or not text.strip():
        if required:
            raise FieldError(field, "missing")
        return None
    try:
        value = float(text)
    except ValueError:
        raise FieldError(field, f"'{text.strip()}' is not a number") from None
    if not np.isfinite(value):
        raise FieldError(field, f"'{text.strip()}' is not finite")
    return value


def _check_box(box: list[float], width: float | None, height: float | None, where: str) -> None:
    x0, y0, x1, y1 = box
    if not (x0 < x1 and y0 < y1):
        raise FieldError(f"{where}/bndbox", f"{box}: needs xmin < xmax and ymin < ymax")
    # VOC coordinates are 1-based, so xmax may equal the width (+1 tolerates 0-based writers)
    if x0 < 0 or y0 < 0 or (width and x1 > width + 1) or (height and y1 > height + 1):
        raise FieldError(f"{where}/bndbox", f"{box} is outside the image ({width} x {height})")


def _image_rows(folder: Path) -> list[dict]:
    """One raw row per image stem (image and/or annotation), in name order."""
    images = {p.stem: p for p in sorted((folder / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    notes = folder / "annotations"
    xmls = {p.stem: p for p in sorted(notes.glob("*.xml"))} if notes.is_dir() else {}
    stems = sorted(set(images) | set(xmls))
    return [{FILE: str(xmls.get(s) or images[s]), ROW: i + 1, "stem": s, "path": str(images.get(s, "")),
             "annotation": str(xmls.get(s, "")), "labelled": notes.is_dir()} for i, s in enumerate(stems)]


def _check_row(record: dict) -> None:
    from facelab.formats.images import check_image

    if not record["path"]:
        raise FieldError("image", f"no image named {record['stem']}.* in images/")
    check_image(record["path"], "image")
    if record["labelled"] and not record["annotation"]:
        raise FieldError("annotation", f"no annotations/{record['stem']}.xml for this image")
    if record["annotation"]:
        parse_voc(Path(record["annotation"]))


def _parse_batch(batch: pd.DataFrame) -> pd.DataFrame:
    notes = [parse_voc(Path(a)) if a else {"boxes": [], "labels": [], "width": None, "height": None}
             for a in batch["annotation"]]
    return pd.DataFrame({FILE: batch[FILE], ROW: batch[ROW], "file": [Path(p).name for p in batch["path"]],
                         "path": batch["path"], "boxes": [json.dumps(n["boxes"]) for n in notes],
                         "labels": [json.dumps(n["labels"]) for n in notes],
                         "width": [n["width"] or 0 for n in notes], "height": [n["height"] or 0 for n in notes]})


def voc_items(folder: Path) -> pd.DataFrame:
    """The parsed rows of a VOC folder without Ray (small folders: benches, truth files)."""
    rows = _image_rows(folder)
    for record in rows:
        try:
            _check_row(record)
        except FieldError as exc:
            raise DataError(BadRow(record[FILE], record[ROW], exc.field, exc.reason)) from None
    return _parse_batch(pd.DataFrame(rows))


def truth_boxes(folder: Path) -> tuple[dict[str, list], dict[str, list]]:
    """Every image of a labelled VOC folder -> its boxes, and -> its labels (a bad file raises)."""
    if not (Path(folder) / "annotations").is_dir():
        raise DataError(BadRow(str(folder), 0, "annotations", "the truth folder has no annotations/"))
    items = voc_items(folder)
    return tuple({f: json.loads(v) for f, v in zip(items["file"], items[c])} for c in ("boxes", "labels"))


def read_detections(path: Path) -> list[tuple[str, list[float], float]]:
    """A detections CSV as (file, box, score) triples; a bad row is named."""
    frame = pd.read_csv(require_file(path, "submission"), dtype={"file": str})
    for name in COLUMNS:
        if name not in frame:
            raise DataError(BadRow(str(path), 1, name, f"missing column (found {list(frame.columns)})"))
    values = frame[list(COLUMNS[1:])].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values).all(1) | (values[:, 2] <= values[:, 0]) | (values[:, 3] <= values[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(BadRow(str(path), i + 2, "x0..score", f"{frame.iloc[i].tolist()}: needs numbers with x0 < x1, y0 < y1"))
    return [(f, list(v[:4]), float(v[4])) for f, v in zip(frame["file"], values)]


def detections_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per-image predictions (`file`, `faces` JSON) as one row per face in the submission columns."""
    rows = [(file, *face["box"], face["score"]) for file, faces in zip(predictions["file"], predictions["faces"])
            for face in json.loads(faces)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


class DetectFormat(Format):
    task = "detect"
    splits = ("val", "test")
    synthetic_truth = "."  # the truth is the VOC folder itself (its test/ split)
    submission_name = "detections.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        if split not in self.splits:
            raise DataError(BadRow(str(root), 0, "-", f"unknown split '{split}' (have {', '.join(self.splits)})"))
        rows = _image_rows(split_folder(root, split))
        if not rows:
            raise DataError(BadRow(str(root), 0, "images", "no images found"))
        return validated(rows, _check_row, _parse_batch, skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        """`predictions`: one row per detected face in COLUMNS (see `detections_frame`)."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions[list(COLUMNS)].to_csv(out, index=False, float_format="%.2f")
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        result = self._evaluate(submission, truth)
        result.pop("curve")
        return result

    def _evaluate(self, submission: Path, truth: Path) -> dict:
        boxes, labels = truth_boxes(split_folder(truth, "test"))
        pred = read_detections(Path(submission))
        unknown = [i for i, p in enumerate(pred) if p[0] not in boxes]
        if unknown:
            raise DataError(BadRow(str(submission), unknown[0] + 2, "file", f"'{pred[unknown[0]][0]}' is not an image of the truth"))
        return metrics.face_detection(boxes, pred, truth_labels=labels)

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        from facelab import plots

        Path(out).mkdir(parents=True, exist_ok=True)
        result = self._evaluate(submission, truth)
        return [plots.pr_curves_png({Path(submission).stem: result}, Path(out) / "pr_curve.png",
                                    title="face detection, IoU 0.5")]

    def synthesize(self, out: Path, *, n: int = 24, seed: int = 0) -> Path:
        """Noise backgrounds with 1-3 cartoon faces each (facelab.formats.cartoon), VOC-annotated,
        in `val/` and `test/` (n/2 images each). The faces are frontal and clear, so a working
        detector (mediapipe, haar) finds most of them and a broken one scores near zero."""
        from facelab.formats.cartoon import draw_face, noise_background, random_face

        rng = np.random.default_rng(seed)
        out = Path(out)
        for split in self.splits:
            for i in range(max(n // 2, 2)):
                image = noise_background(rng, 320, 240)
                objects = []
                for slot in rng.permutation(3)[: rng.integers(1, 4)]:
                    rx = float(rng.uniform(22, 36))
                    cx, cy = 55 + 105 * slot + rng.uniform(-8, 8), rng.uniform(75, 165)
                    placed = draw_face(image, random_face(rng, beard=False), cx, cy, rx)
                    objects.append(("face", [cx - rx, cy - placed.ry, cx + rx, cy + placed.ry]))
                name = f"synth{i:03d}"
                (out / split / "images").mkdir(parents=True, exist_ok=True)
                image.save(out / split / "images" / f"{name}.png")
                write_voc(out / split / "annotations" / f"{name}.xml", f"{name}.png", 320, 240, objects)
        return out


def write_voc(path: Path, filename: str, width: int, height: int, objects: list[tuple[str, list[float]]]) -> Path:
    """A minimal PASCAL VOC annotation file."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for label, box in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = str(int(round(value)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path)
    return path
