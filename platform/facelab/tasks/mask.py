"""AI Blitz XIII mask prediction (seed 000, section 3): mask type and box with a YOLO detector.

The seed fine-tuned a pretrained YOLOv5l for 100 epochs (batch 16) on the 5,600 official training
images and reached 0.993. No weights can be downloaded here, so the detector is built from
ultralytics' YAML and trained from scratch, with the augmentation a set of a few hundred images
needs (mosaic, flips, HSV, scale and translation jitter, a little mixup and rotation); the sweep
(tuning/spaces/mask.py) covers three families, sizes n/s/m, image size and epochs under ASHA.

Data: the Blitz layout (`../shared/data/aiblitz_mask`: 100 train and 100 val real images, one
mask each: val is for early stopping and scoring), or the same CSVs with several rows per image
and the label set in `labels.json` (`facelab data convert --task mask-voc` builds it from the
Kaggle face-mask VOC set: with_mask / without_mask / mask_weared_incorrect).

Metric (`ap50`): with one mask per image, each image's most confident box is its answer and val
is scored exactly as `facelab score` scores a submission (AP of type and box at IoU 0.5 with every
answer at confidence 1.0, since a submission holds no confidence; `type_accuracy`); with several
objects per image, VOC AP@0.5 over every detection with its confidence.

The second method, face detector + lower-face box + type CNN, is the task `mask-face`
(facelab/tasks/mask_face.py); both share `MaskAnswers`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from facelab import metrics
from facelab.errors import FacelabError
from facelab.formats import Read
from facelab.formats.mask import MASK_TYPES, format_bbox
from facelab.tasks.yolo_base import YoloPredictor, YoloTask

LABELS_FILE = "labels.json"  # the label set of a multi-face data folder, in class order


def dataset_labels(data: Path) -> tuple[str, ...]:
    """The masktypes a data folder may hold: its `labels.json`, else the Blitz four."""
    path = Path(data) / LABELS_FILE
    if not path.is_file():
        return MASK_TYPES
    labels = json.loads(path.read_text())
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)
            and len(set(labels)) == len(labels)):
        raise FacelabError(f"{path}: expected a list of distinct label names")
    return tuple(labels)


def score_detections(truth: list[tuple], detections: list[tuple]) -> dict[str, float]:
    """Validation metrics from truth `(image_id, box, label)` and detections `(image_id, box,
    label, confidence)` (see the module docstring)."""
    if max(Counter(t[0] for t in truth).values(), default=0) > 1:
        scores = metrics.detection_ap(truth, detections)
        scores.pop("type_accuracy")  # one answer per image means nothing with several faces
        return scores
    best: dict[str, tuple] = {}
    for detection in detections:
        if detection[0] not in best or detection[3] > best[detection[0]][3]:
            best[detection[0]] = detection
    answers = [(image_id, best[image_id][1], best[image_id][2], 1.0) for image_id, _, _ in truth if image_id in best]
    return metrics.detection_ap(truth, answers)


class MaskPredictor(YoloPredictor):
    """Per image its most confident box: `label`, `box` (xmin, ymin, xmax, ymax in pixels),
    `confidence`. An image with no detection at all gets the lower middle of the image, the
    first class and confidence 0 (a submission needs a row for every image)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from facelab.yolo.predict import detect

        images = self.images(batch)
        labels, boxes, confidences = [], [], []
        for image, (box, confidence, label) in zip(images, detect(self.model, images)):
            if len(confidence):
                best = (label[0], box[0], float(confidence[0]))
            else:
                h, w = image.shape[:2]
                best = (self.model.names[0], np.array([0.25 * w, 0.45 * h, 0.75 * w, 0.95 * h]), 0.0)
            labels.append(best[0])
            boxes.append(best[1])
            confidences.append(best[2])
        return {**self.keys(batch), "label": np.array(labels, dtype=object),
                "box": np.stack(boxes).astype(np.float64).reshape(-1, 4), "confidence": np.array(confidences)}


class MaskAnswers:
    """What both mask methods share: the label set of the data folder, one answer per image
    scored by `score_detections`, the response and the submission columns."""

    def read_for_fit(self, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
        labels = dataset_labels(data)
        return {split: self.format.read(data, split, skip_bad=skip_bad, labels=labels) for split in self.fit_splits}

    def class_names(self, data: dict[str, Read]) -> tuple[str, ...]:
        seen = set()
        for read in data.values():
            seen |= set(read.dataset.select_columns(["label"]).to_pandas()["label"])
        return MASK_TYPES if seen <= set(MASK_TYPES) else tuple(sorted(seen))

    def response(self, outputs: list[dict], batched: bool) -> dict:
        shaped = [{"masktype": str(o["label"]), "bbox": [round(float(v), 1) for v in o["box"]],
                   "bbox_text": format_bbox(o["box"]), "confidence": float(o["confidence"])} for o in outputs]
        return {"predictions": shaped} if batched else shaped[0]

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "image_id", "box", "label", "confidence"]]


class MaskTask(MaskAnswers, YoloTask):
    name = "mask"
    seed = "000 AI Blitz XIII, 3: mask type and box"
    metric = "ap50"
    mode = "max"
    kind = "detect"
    default_config: ClassVar[dict] = {
        "model": "yolov8n", "imgsz": 320, "epochs": 60, "batch": 16, "patience": 20,
        "optimizer": "AdamW", "lr0": 0.002, "cos_lr": True, "warmup_epochs": 3,
        # a few hundred images: strong, label-preserving augmentation
        "mosaic": 1.0, "close_mosaic": 10, "mixup": 0.1, "fliplr": 0.5, "degrees": 5.0, "translate": 0.1,
        "scale": 0.5, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4,
    }
    # `facelab demo` trains once with this (minutes on a laptop CPU); `facelab tune` sweeps in earnest
    demo_config: ClassVar[dict] = {"model": "yolov8n", "imgsz": 96, "epochs": 3, "batch": 8, "plots": False}
    predictor_class = MaskPredictor

    scorer = staticmethod(score_detections)
