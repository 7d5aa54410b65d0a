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
(facelab/tasks/mask_face.py); both share `facelab.mask_answers`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from facelab.mask_answers import MaskAnswers, score_detections
from facelab.task_config import YoloDetectConfig, YoloOptimizer
from facelab.tasks.yolo_base import YoloPredictor, YoloTask


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


class MaskConfig(YoloDetectConfig):
    """A YOLOv8n detector from scratch. A few hundred images: strong, label-preserving augmentation
    (ultralytics' mosaic, translation, scale and colour defaults, plus mixup and some rotation)."""

    imgsz: int = 320
    epochs: int = 60
    batch: int = 16
    patience: int = 20
    optimizer: YoloOptimizer = "AdamW"
    lr0: float = 0.002
    cos_lr: bool = True
    warmup_epochs: float = 3
    mixup: float = 0.1
    degrees: float = 5.0


class MaskTask(MaskAnswers, YoloTask):
    name = "mask"
    reference = "000 AI Blitz XIII, 3: mask type and box"
    metric = "ap50"
    mode = "max"
    converters = ("mask-voc",)
    kind = "detect"
    Config = MaskConfig
    # `facelab demo` trains once with this (minutes on a laptop CPU); `facelab tune` sweeps in earnest
    demo_config: ClassVar[dict] = {"model": "yolov8n", "imgsz": 96, "epochs": 3, "batch": 8, "plots": False}
    predictor_class = MaskPredictor

    scorer = staticmethod(score_detections)
