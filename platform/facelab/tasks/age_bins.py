"""AI Blitz XIII age prediction (seed 000, section 2): ten age bins with a YOLO classifier.

The seed used a YOLOv5l *detector* only for its class output, with a fixed box around the image
centre (x, y = 0.5, w, h = 0.8) for every image: the box carried no information, so a classifier
of the whole image is the honest equivalent, and this task trains ultralytics' classification
models (`yolov8n-cls.yaml`, `yolo11s-cls.yaml`, ...) from scratch (no weights can be downloaded;
the seed's YOLOv5l started from pretrained weights, 200 epochs, batch 16, 512 px). As in the seed,
`facelab train` fits on train+val (`merge_val`; the reported val metrics are then in-sample) and
can add the central 280/512 crop of every training image, resized back, as a second image
(`crop_double`: 0.546875). Sweeps keep val held out (tuning/spaces/age_bins.py) so ASHA compares
honest scores. Metric: weighted F1, then accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from facelab import metrics, plots
from facelab.answers import Answer
from facelab.formats import Read
from facelab.formats.age_bins import AGE_BINS
from facelab.task_config import YoloClassifyConfig, YoloOptimizer
from facelab.tasks.yolo_base import YoloPredictor, YoloTask

SEED_CROP = 280 / 512  # the seed's central crop, as a fraction of the image side


class AgeBinsPredictor(YoloPredictor):
    """Per image its bin (`label`) and the probability of every bin (`p_<bin>`)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from facelab.yolo.predict import classify

        proba = classify(self.model, self.images(batch))[:, [self.model.names.index(b) for b in AGE_BINS]]
        out = {**self.keys(batch), "label": np.array(AGE_BINS, dtype=object)[proba.argmax(1)]}
        out.update({f"p_{b}": proba[:, i] for i, b in enumerate(AGE_BINS)})
        return out


class AgeBinAnswer(Answer):
    """The most likely age bin and the probability of each bin."""

    age: str
    probabilities: dict[str, float]


class AgeBinsConfig(YoloClassifyConfig):
    """A small YOLO11 classifier from scratch, trained on train+val as the seed did."""

    model: str = "yolo11n"
    imgsz: int = 128
    epochs: int = 30
    batch: int = 64
    patience: int = 10
    optimizer: YoloOptimizer = "AdamW"
    lr0: float = 0.001
    cos_lr: bool = True
    warmup_epochs: float = 2
    merge_val: bool = True
    # faces: keep most of the face in every random crop
    scale: float = 0.2
    erasing: float = 0.2


class AgeBinsTask(YoloTask):
    name = "age-bins"
    reference = "000 AI Blitz XIII, 2: age bins"
    metric = "f1_weighted"
    mode = "max"
    converters = ("age-bins",)
    kind = "classify"
    Config = AgeBinsConfig
    # `facelab demo` trains once with this (minutes on a laptop CPU); `facelab tune` sweeps in earnest
    demo_config: ClassVar[dict] = {"model": "yolov8n", "imgsz": 64, "epochs": 3, "batch": 32, "plots": False}
    report_split = "val"
    Answer = AgeBinAnswer
    predictor_class = AgeBinsPredictor

    def class_names(self, data: dict[str, Read]) -> tuple[str, ...]:
        return AGE_BINS

    scorer = staticmethod(metrics.classification)

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame) -> dict[str, float]:
        """The confusion matrix of the stored model on val, predicted the way submissions are;
        with `merge_val` val was trained on, and the metrics say so (`val_in_training`)."""
        merged = bool(config["merge_val"])
        plots.confusion_matrix_png(predictions["label"], predictions["label_pred"], AGE_BINS,
                                   Path(model_dir) / "confusion_matrix.png",
                                   title=f"age-bins: val{' (also trained on: merge_val)' if merged else ''}")
        return {**metrics, "val_in_training": float(merged)}

    def answer(self, output: dict) -> dict:
        return {"age": str(output["label"]), "probabilities": {b: float(output[f"p_{b}"]) for b in AGE_BINS}}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "image_id", "label"]]
