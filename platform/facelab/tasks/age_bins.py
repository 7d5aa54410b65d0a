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
from facelab.formats import Read
from facelab.formats.age_bins import AGE_BINS
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


class AgeBinsTask(YoloTask):
    name = "age-bins"
    seed = "000 AI Blitz XIII, 2: age bins"
    metric = "f1_weighted"
    mode = "max"
    kind = "classify"
    default_config: ClassVar[dict] = {
        "model": "yolo11n", "imgsz": 128, "epochs": 30, "batch": 64, "patience": 10,
        "optimizer": "AdamW", "lr0": 0.001, "cos_lr": True, "warmup_epochs": 2,
        "merge_val": True, "crop_double": 0.0,
        # faces: keep most of the face in every random crop
        "scale": 0.2, "fliplr": 0.5, "erasing": 0.2,
    }
    # `facelab demo` trains once with this (minutes on a laptop CPU); `facelab tune` sweeps in earnest
    demo_config: ClassVar[dict] = {"model": "yolov8n", "imgsz": 64, "epochs": 3, "batch": 32, "plots": False}
    predictor_class = AgeBinsPredictor

    def class_names(self, data: dict[str, Read]) -> tuple[str, ...]:
        return AGE_BINS

    scorer = staticmethod(metrics.classification)

    def describe(self, model_dir: Path, config: dict, data: dict[str, Read], fit_metrics: dict) -> dict[str, float]:
        """The confusion matrix of the stored model on val, predicted the way submissions are;
        with `merge_val` val was trained on, and the metrics say so (`val_in_training`)."""
        from facelab.predict import predict_dataset

        predicted = predict_dataset(self, model_dir, data["val"].dataset)
        truth = data["val"].dataset.select_columns(["image_id", "label"]).to_pandas()
        merged = bool(config.get("merge_val"))
        plots.confusion_matrix_png(predicted["image_id"].map(dict(zip(truth["image_id"], truth["label"]))),
                                   predicted["label"], AGE_BINS, model_dir / "confusion_matrix.png",
                                   title=f"age-bins: val{' (also trained on: merge_val)' if merged else ''}")
        return {**fit_metrics, "val_in_training": float(merged)}

    def response(self, outputs: list[dict], batched: bool) -> dict:
        shaped = [{"age": str(o["label"]), "probabilities": {b: float(o[f"p_{b}"]) for b in AGE_BINS}} for o in outputs]
        return {"predictions": shaped} if batched else shaped[0]

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "image_id", "label"]]
