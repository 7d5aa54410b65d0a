"""What both mask methods (the YOLO detector `mask` and the face-based `mask-face`) share: the
label set of a data folder (`labels.json`, else the Blitz four), the scoring of validation
detections, and `MaskAnswers`, the task mixin for one answer per image (read, class names, the
JSON answer and the submission columns).

Metric: with one mask per image, each image's most confident box is its answer and val is scored
exactly as `facelab score` scores a submission (AP of type and box at IoU 0.5 with every answer at
confidence 1.0, since a submission holds no confidence; `type_accuracy`); with several objects per
image, VOC AP@0.5 over every detection with its confidence.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from facelab import metrics
from facelab.answers import MaskAnswer
from facelab.errors import FacelabError
from facelab.formats import Read
from facelab.formats.mask import MASK_TYPES, format_bbox

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

    Answer = MaskAnswer

    def answer(self, output: dict) -> dict:
        return {"masktype": str(output["label"]), "bbox": [round(float(v), 1) for v in output["box"]],
                "bbox_text": format_bbox(output["box"]), "confidence": float(output["confidence"])}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "image_id", "box", "label", "confidence"]]
