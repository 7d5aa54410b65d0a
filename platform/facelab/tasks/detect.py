"""Face detection (seed 002, HexaFace 3.4 / 5.4: find every face of an image).

The seed trained MTCNN on WIDER FACE. Offline, facelab chooses among the pretrained detectors shipped
inside the installed packages (facelab.faces: dlib HOG and CNN, mediapipe short and full range, OpenCV
Haar), so a "model" is a detector and its options, stored like any other run:

    {"model": "mediapipe", "min_side": 640, "pad": 0.0, "threshold": null}

`min_side` upsamples smaller images first (small faces: dlib's HOG finds none under ~80 px), `pad`
adds a black border (tight face crops), `threshold` drops faces scoring below it. Tune scores each
config by AP at IoU 0.5 on the `val` split (class-agnostic: with_mask and without_mask are both
faces); the refit measures the winner and, unless the config fixes `threshold`, sets it to the score
that maximizes F1 on `val`, the operating point that serving and submissions use.
The default config is the best of `facelab detect-bench` on the face-mask VOC data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from facelab import metrics, plots
from facelab.answers import Answer, Face
from facelab.formats import Read
from facelab.formats.detect import detections_frame
from facelab.formats.images import load_rgb
from facelab.image_requests import ImageRequest, request_rows
from facelab.task_config import FaceDetector, TaskConfig, validated
from facelab.tasks.base import Task


class DetectConfig(TaskConfig):
    """A pretrained detector and its options; the default is the best of `facelab detect-bench` on
    the face-mask VOC data."""

    model: FaceDetector = "mediapipe"
    """face detector: hog, cnn, mediapipe, mediapipe-full or haar (facelab.faces)"""
    min_side: int = Field(640, ge=1)
    """images whose shorter side is below this are upsampled to it first"""
    pad: float = Field(0.0, ge=0, lt=1)
    """a black border added around every image, as a fraction of its size (tight face crops)"""
    threshold: float | None = None
    """faces scoring below this are dropped (null: the fit sets the best-F1 score on val)"""


def detector_from(config: dict):
    """The facelab.faces detector a (full or partial) detect config names."""
    from facelab.faces import get_detector

    config = validated("detect", DetectConfig, config, source="detector")
    return get_detector(config["model"], min_side=config["min_side"], pad=config["pad"], threshold=config["threshold"])


def detect_paths(config: dict, paths: list[str]) -> tuple[list[list], float, float]:
    """Faces of each image file under `config`, and the wall-clock and CPU milliseconds per image
    of the detector calls (decoding and model loading excluded)."""
    detect, found, wall, cpu = detector_from(config), [], 0.0, 0.0
    if paths:
        detect(load_rgb(paths[0]))  # loads the model
    for path in paths:
        image = load_rgb(path)
        w, c = time.perf_counter(), time.process_time()
        found.append(detect(image))
        wall, cpu = wall + time.perf_counter() - w, cpu + time.process_time() - c
    n = max(len(paths), 1)
    return found, 1000 * wall / n, 1000 * cpu / n


def evaluate(config: dict, items: pd.DataFrame) -> dict:
    """Run `config` over labelled images (`file`, `path`, `boxes`, `labels` JSON) and score it
    (facelab.metrics.face_detection, plus `ms_per_image` and `cpu_ms_per_image`)."""
    faces, wall, cpu = detect_paths(config, list(items["path"]))
    truth, labels = ({f: json.loads(v) for f, v in zip(items["file"], items[c])} for c in ("boxes", "labels"))
    pred = [(f, face.box, face.score) for f, found in zip(items["file"], faces) for face in found]
    return {**metrics.face_detection(truth, pred, truth_labels=labels), "ms_per_image": wall, "cpu_ms_per_image": cpu}


class DetectPredictor:
    """Batch predictor: rows with an `image` (RGB array; Serve) or a `path` (batch jobs) in, and
    per image `faces`, the JSON text of [{"box", "score", "landmarks", "whole_image"}, ...]."""

    def __init__(self, model_dir: str):
        self.config = json.loads((Path(model_dir) / "detector.json").read_text())
        self.detect = detector_from(self.config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = batch["image"] if "image" in batch else [load_rgb(p) for p in batch["path"]]
        out = {"faces": np.array([json.dumps([f.as_dict() for f in self.detect(im)]) for im in images], dtype=object)}
        out.update({k: batch[k] for k in ("_row", "file") if k in batch})
        return out


class DetectAnswer(Answer):
    """Every face found, best first."""

    faces: list[Face]


class DetectTask(Task):
    name = "detect"
    reference = "002 HexaFace, 3.4 / 5.4: face detection"
    metric = "ap50"
    mode = "max"
    Config = DetectConfig
    fit_splits = ("val",)
    Request = ImageRequest
    Answer = DetectAnswer
    predictor_class = DetectPredictor

    def trial_data(self, data: dict[str, Read]) -> pd.DataFrame:
        return data["val"].dataset.to_pandas()[["file", "path", "boxes", "labels"]]

    def evaluate_config(self, config: dict, data: pd.DataFrame) -> dict[str, float]:
        result = evaluate({**config, "threshold": None}, data)
        return {k: v for k, v in result.items() if k != "curve"}

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        result = evaluate({**config, "threshold": None}, self.trial_data(data))
        threshold = config["threshold"]
        if threshold is None and np.isfinite(result["best_threshold"]):  # no detections at all: keep every box
            threshold = result["best_threshold"]
        chosen = {"model": config["model"], "min_side": int(config["min_side"]), "pad": float(config["pad"]),
                  "threshold": None if threshold is None else float(threshold)}
        (Path(model_dir) / "detector.json").write_text(json.dumps(chosen, indent=2))
        plots.pr_curves_png({chosen["model"]: result}, Path(model_dir) / "pr_curve.png",
                            title=f"detect: val split, IoU 0.5 (threshold {chosen['threshold']})")
        keep = ("ap50", "precision", "recall", "f1", "best_f1", "best_threshold", "ms_per_image", "n_images", "n_truth")
        return {k: float(v) for k, v in result.items() if k in keep or k.startswith("recall_")}

    def request_rows(self, request: ImageRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def answer(self, output: dict) -> dict:
        return {"faces": json.loads(output["faces"])}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        from facelab.formats.detect import split_folder
        from facelab.uploads import to_base64

        image = sorted((split_folder(data, "test") / "images").iterdir())[0]
        return {"image": to_base64(image.read_bytes())}, {"image": "not an image"}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return detections_frame(predictions)
