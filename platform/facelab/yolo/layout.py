"""A task's validated splits in ultralytics' dataset layout, built in facelab's cache.

`YoloData.from_reads` takes a task's validated splits (ids, image paths, labels, boxes);
`materialize` writes ultralytics' layout into `<cache>/yolo-data/<kind>-<key>` on whichever node
runs the fit, keyed by the data fingerprint (`facelab.store.fingerprint` of the data folder, the
rows kept and the layout options), never into the user's data folder. No ultralytics import.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from facelab.config import cache_dir
from facelab.errors import FacelabError

Scorer = Callable[..., dict]


@dataclass(frozen=True)
class YoloData:
    """A task's validated splits as rows (`image_id`, `path`, `label`, and for detection the box
    `xmin`..`ymax` in pixels; several rows per image are several objects), the class names in
    index order, the data fingerprint, and the task's scorer of validation predictions:
    detection `scorer(truth, predictions)` with truth `(image_id, box, label)` and predictions
    `(image_id, box, label, confidence)`; classification `scorer(true_labels, predicted_labels)`."""

    kind: str  # "detect" or "classify"
    names: tuple[str, ...]
    rows: dict[str, pd.DataFrame]
    fingerprint: str
    scorer: Scorer = field(compare=False)

    @classmethod
    def from_reads(cls, kind: str, reads: dict, names: Sequence[str], scorer: Scorer) -> YoloData:
        from facelab.store import fingerprint

        rows = {}
        for split, read in reads.items():
            frame = read.dataset.to_pandas()
            out = frame[["image_id", "path", "label"]].astype(str).reset_index(drop=True)
            if kind == "detect":
                out[["xmin", "ymin", "xmax", "ymax"]] = np.stack([np.asarray(b, float) for b in frame["box"]])
            rows[split] = out
        unknown = {label for frame in rows.values() for label in frame["label"]} - set(names)
        if unknown:
            raise FacelabError(f"labels {sorted(unknown)} are not among the classes {list(names)}")
        paths = [p for frame in rows.values() for p in frame["path"]]
        if not paths:
            raise FacelabError("no rows to train on")
        root = os.path.commonpath([str(Path(p).parent.parent) for p in paths])
        digest = hashlib.sha256(fingerprint(root).encode())
        for split in sorted(rows):
            digest.update(split.encode() + rows[split].to_csv(index=False).encode())
        return cls(kind, tuple(names), rows, digest.hexdigest(), scorer)


def materialize(data: YoloData, *, merge_val: bool = False, crop_double: float = 0.0,
                cache: str | os.PathLike | None = None) -> Path:
    """ultralytics' layout of `data` in the cache (built once per key, atomically): for detection
    the `data.yaml` of `images/<split>/` + `labels/<split>/`, for classification the folder of
    `<split>/<class>/`. `merge_val` also trains on val (val stays the validation set);
    `crop_double` > 0 adds to train a central crop of that fraction of every image, resized back
    to the image's size (the age seed's 280/512 doubling)."""
    options = json.dumps({"merge_val": bool(merge_val), "crop_double": float(crop_double)}, sort_keys=True)
    key = hashlib.sha256((data.fingerprint + options).encode()).hexdigest()[:20]
    folder = Path(cache_dir(cache)) / "yolo-data" / f"{data.kind}-{key}"
    result = folder / "data.yaml" if data.kind == "detect" else folder
    if (folder / ".complete").is_file():
        return result
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        splits = {"train": data.rows["train"], "val": data.rows["val"]}
        if merge_val:
            splits["train"] = pd.concat([data.rows["train"], data.rows["val"]], ignore_index=True)
        for split, rows in splits.items():
            crop = crop_double if split == "train" else 0.0
            if data.kind == "detect":
                _write_detection_split(rows, building, split, data.names, crop)
            else:
                _write_classification_split(rows, building / split, data.names, crop)
        if data.kind == "detect":
            (building / "data.yaml").write_text(yaml.safe_dump({
                "path": str(folder), "train": "images/train", "val": "images/val",
                "names": dict(enumerate(data.names))}, sort_keys=False))
        (building / ".complete").write_text(options)
        try:
            os.rename(building, folder)
        except OSError:  # another trial built the same key meanwhile
            if not (folder / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return result


def _place(src: str, dest: Path) -> None:
    """A hard link where the filesystem allows (no copy of the user's data), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _central_crop(src: str, dest: Path, fraction: float) -> tuple[int, int]:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
        left, top = (w - cw) // 2, (h - ch) // 2
        im.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR).save(dest, quality=95)
    return left, top


def _write_classification_split(rows: pd.DataFrame, folder: Path, names: Sequence[str], crop: float) -> None:
    for name in names:  # every class folder, so class indices never depend on which labels a split holds
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows.itertuples()):
        stem = f"{i:06d}_{row.image_id}"  # unique even when train and val share an id
        _place(row.path, folder / row.label / f"{stem}{Path(row.path).suffix}")
        if crop:
            _central_crop(row.path, folder / row.label / f"{stem}_crop.jpg", crop)


def _write_detection_split(rows: pd.DataFrame, root: Path, split: str, names: Sequence[str], crop: float) -> None:
    from PIL import Image

    images, labels = root / "images" / split, root / "labels" / split
    labels.mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(names)}
    for image_id, objects in rows.groupby("image_id", sort=False):
        path = objects["path"].iloc[0]
        with Image.open(path) as im:
            width, height = im.size
        _place(path, images / f"{image_id}{Path(path).suffix}")
        boxes = objects[["xmin", "ymin", "xmax", "ymax"]].to_numpy(float)
        classes = [index[label] for label in objects["label"]]
        (labels / f"{image_id}.txt").write_text(_yolo_lines(classes, boxes, width, height))
        if crop:
            left, top = _central_crop(path, images / f"{image_id}_crop.jpg", crop)
            scale = 1.0 / crop
            moved = (boxes - [left, top, left, top]) * scale
            moved[:, [0, 2]] = moved[:, [0, 2]].clip(0, width)
            moved[:, [1, 3]] = moved[:, [1, 3]].clip(0, height)
            keep = (moved[:, 2] - moved[:, 0] > 1) & (moved[:, 3] - moved[:, 1] > 1)
            (labels / f"{image_id}_crop.txt").write_text(
                _yolo_lines([c for c, k in zip(classes, keep) if k], moved[keep], width, height))


def _yolo_lines(classes: Sequence[int], boxes: np.ndarray, width: int, height: int) -> str:
    """`class x_center y_center width height`, normalised to the image (YOLO txt labels)."""
    lines = []
    for c, (x0, y0, x1, y1) in zip(classes, boxes):
        lines.append(f"{c} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")
