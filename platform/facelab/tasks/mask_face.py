"""AI Blitz XIII mask prediction (seed 000, section 3), the second method: face, lower face, type.

Beside the YOLO detector (`mask`), this method splits the job in three, each small enough for a
couple of hundred images:
1. the offline face detector (mediapipe BlazeFace short range, the best one on masked faces in
   `facelab detect-bench`) finds the most confident face;
2. the mask box is regressed from the face: a ridge regression from the face box and its five
   landmarks to the mask's edges in face-box units (a mask covers the lower face, so its box
   follows the face's); an image without a face gets the training set's mean mask box;
3. a small CNN (the ResNet-18 layout at a small width, random init) classifies the mask type from
   the lower-face crop, trained through the shared Ray Train mechanism. It trains on the true mask
   boxes, jittered by about the regression's error, and is validated on the regressed boxes, as it
   is used.

Scored exactly as `mask` (AP of type and box at IoU 0.5, one answer per image; `type_accuracy`),
plus `box_iou` (mean IoU of the regressed boxes with the true ones, whatever the type). It reads
the Blitz layout with one mask per image; the multi-face VOC set is the YOLO task's.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from facelab import metrics
from facelab.errors import FacelabError
from facelab.formats import Read
from facelab.mask_answers import MaskAnswers, score_detections
from facelab.task_config import ImageConfig, StartsFromBackbone
from facelab.tasks.prepared_torch import Prepared, PreparedTorchTask
from facelab.tasks.yolo_base import ImageUploads
from facelab.vision import (ImageRecipe, input_images, load_image, normalised, resnet18, rgb, run_net, stacked,
                            training_datasets)

DETECTOR = {"name": "mediapipe", "min_side": 640, "pad": 0.15}
RIDGE_ALPHA = 1.0
N_FEATURES = 15  # face box in image units (4), five landmarks in face-box units (10), detector score


@functools.cache
def _detector():
    from facelab.faces import get_detector

    options = {k: v for k, v in DETECTOR.items() if k != "name"}
    return get_detector(DETECTOR["name"], **options)


def find_face(image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(face box in pixels, the regression's features) of the most confident face, or None."""
    faces = _detector()(image)
    if not faces:
        return None
    face = max(faces, key=lambda f: f.score)
    height, width = image.shape[:2]
    box = np.asarray(face.box, np.float64)
    side = np.maximum(box[2:] - box[:2], 1.0)
    landmarks = (np.asarray(face.landmarks, np.float64) - box[:2]) / side
    features = np.concatenate([box / [width, height, width, height], landmarks.ravel(), [face.score]])
    return box, features


class LowerFaceBox:
    """Mask box from the face: ridge regression to (x0, y0, x1, y1) of the mask in face-box units
    (0 = the face's left/top edge, 1 = its right/bottom edge); a JSON-able set of numbers."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, prior: np.ndarray):
        self.coef, self.intercept, self.prior = (np.asarray(v, np.float64) for v in (coef, intercept, prior))

    @classmethod
    def fit(cls, faces: np.ndarray, features: np.ndarray, boxes: np.ndarray, sizes: np.ndarray) -> LowerFaceBox:
        """From training rows: face boxes (NaN where no face), features, true mask boxes, image (w, h)."""
        from sklearn.linear_model import Ridge

        prior = (boxes / np.tile(sizes, 2)).mean(0)  # the mean mask box in image units
        found = ~np.isnan(faces).any(1)
        if found.sum() < 2:
            return cls(np.zeros((4, N_FEATURES)), np.array([0.05, 0.4, 0.95, 1.05]), prior)
        model = Ridge(alpha=RIDGE_ALPHA).fit(features[found], cls._relative(boxes[found], faces[found]))
        return cls(model.coef_, model.intercept_, prior)

    @staticmethod
    def _relative(boxes: np.ndarray, faces: np.ndarray) -> np.ndarray:
        side = np.tile(faces[:, 2:] - faces[:, :2], 2)
        return (boxes - np.tile(faces[:, :2], 2)) / side

    def predict(self, face: np.ndarray | None, features: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
        """The mask box in pixels, inside the image, for one face (None: the prior box)."""
        width, height = size
        if face is None:
            box = self.prior * [width, height, width, height]
        else:
            relative = self.coef @ features + self.intercept
            box = np.tile(face[:2], 2) + relative * np.tile(face[2:] - face[:2], 2)
        box = np.clip(box, 0, [width, height, width, height])
        box[2:] = np.maximum(box[2:], box[:2] + 1)
        return box

    def to_json(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "prior": self.prior.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> LowerFaceBox:
        return cls(data["coef"], data["intercept"], data["prior"])


def add_faces(batch: pd.DataFrame) -> pd.DataFrame:
    """Ray Data step: each image's face box (NaN: none), features and size."""
    faces, features, sizes = [], [], []
    for path in batch["path"]:
        image = load_image(path)
        found = find_face(image)
        faces.append(found[0] if found else np.full(4, np.nan))
        features.append(found[1] if found else np.zeros(N_FEATURES))
        sizes.append(np.array(image.shape[1::-1], np.float64))
    return batch.assign(face=faces, features=features, size=sizes)


def crop(image: np.ndarray, box: np.ndarray, context: float, rng: np.random.Generator | None = None,
         jitter: float = 0.0) -> np.ndarray:
    """The box widened by `context` of its sides on every edge (each edge moved by up to `jitter`
    of the side when an rng is given), cut from the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    edges = np.array([x0 - context * w, y0 - context * h, x1 + context * w, y1 + context * h])
    if rng is not None and jitter:
        edges += rng.uniform(-jitter, jitter, 4) * [w, h, w, h]
    height, width = image.shape[:2]
    left, top = int(np.clip(edges[0], 0, width - 1)), int(np.clip(edges[1], 0, height - 1))
    right, bottom = int(np.clip(edges[2], left + 1, width)), int(np.clip(edges[3], top + 1, height))
    return image[top:bottom, left:right]


class MaskTypeRecipe(ImageRecipe):
    """The type CNN over lower-face crops: true boxes (jittered by `aug_box`) in training, the
    regressed boxes (`pred_box`) in validation, where the whole method is scored."""

    def build_model(self, config: dict):
        return resnet18(len(config["labels"]), int(config["width"]))

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        rng = np.random.default_rng() if train else None
        boxes = batch["box"] if train else batch["pred_box"]
        crops = [crop(load_image(p), b, float(config["context"]), rng, float(config["aug_box"]))
                 for p, b in zip(batch["path"], boxes)]
        index = {label: i for i, label in enumerate(config["labels"])}
        out = {"image": stacked(input_images({"image": crops}, config, train)),
               "label": np.array([index[str(v)] for v in batch["label"]], np.int64)}
        if not train:
            out.update(box=np.stack(list(batch["box"])), pred_box=np.stack(list(batch["pred_box"])),
                       row=np.asarray(batch["_row"], np.int64))
        return out

    def loss(self, model, batch: dict, config: dict):
        import torch

        logits = run_net(model, normalised(batch["image"]))
        return torch.nn.functional.cross_entropy(logits, batch["label"],
                                                 label_smoothing=float(config["label_smoothing"]))

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        import torch

        labels = config["labels"]
        truth, detections, overlaps = [], [], []
        for batch in batches:
            proba = torch.softmax(model(normalised(batch["image"])), 1).cpu().numpy()
            box, pred_box = batch["box"].cpu().numpy(), batch["pred_box"].cpu().numpy()
            for row, b, pb, y, p in zip(batch["row"].cpu().numpy(), box, pred_box, batch["label"].cpu().numpy(), proba):
                truth.append((str(row), b.tolist(), labels[y]))
                detections.append((str(row), pb.tolist(), labels[int(p.argmax())], float(p.max())))
            overlaps.append(metrics.ious(box, pred_box))
        return {**score_detections(truth, detections), "box_iou": float(np.concatenate(overlaps).mean())}


class MaskFacePredictor:
    """Per image: `label`, `box` (pixels), `confidence` (the type's probability), as MaskPredictor."""

    def __init__(self, model_dir: str):
        from facelab.torch_train import CONFIG_FILE, load_model

        self.config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
        self.model = load_model(MaskTypeRecipe(), Path(model_dir))
        self.device = next(self.model.parameters()).device
        self.boxes = LowerFaceBox.from_json(self.config["box_model"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = [rgb(i) for i in batch["image"]] if "image" in batch else [load_image(p) for p in batch["path"]]
        boxes = []
        for image in images:
            found = find_face(image)
            boxes.append(self.boxes.predict(*(found or (None, None)), image.shape[1::-1]))
        crops = [crop(image, box, float(self.config["context"])) for image, box in zip(images, boxes)]
        x = torch.from_numpy(stacked(input_images({"image": crops}, self.config, train=False))).to(self.device)
        with torch.no_grad():
            proba = torch.softmax(self.model(normalised(x)), 1).cpu().numpy()
        out = {"label": np.asarray(self.config["labels"], dtype=object)[proba.argmax(1)],
               "box": np.stack(boxes).astype(np.float64), "confidence": proba.max(1)}
        out.update({k: batch[k] for k in ("_row", "image_id") if k in batch})
        return out


class MaskFaceConfig(ImageConfig, StartsFromBackbone):
    """The type CNN (a small ResNet-18) over lower-face crops."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    early_stop_patience: int | None = 20
    image_size: int = 96
    width: int = Field(16, ge=1)
    """base width of the ResNet-18 (64: torchvision's)"""
    context: float = Field(0.1, ge=0)
    """the mask box is widened by this fraction of its sides on every edge before it is cut out"""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """label smoothing of the type's cross-entropy"""
    aug_box: float = Field(0.1, ge=0, lt=1)
    """training crops' edges move by up to this fraction of the box's side"""
    aug_colour: float = 0.25
    aug_grey: float = 0.1


class MaskFaceTask(MaskAnswers, ImageUploads, PreparedTorchTask):
    name = "mask-face"
    format_name = "mask"
    reference = "000 AI Blitz XIII, 3: mask type and box (face detector + lower-face box + type CNN)"
    metric = "ap50"
    mode = "max"
    Config = MaskFaceConfig
    demo_config: ClassVar[dict] = {"epochs": 2, "image_size": 48, "width": 8}
    predictor_class = MaskFacePredictor
    predict_on_gpu = True

    def prepare_data(self, data: dict[str, Read], config: dict) -> Prepared:
        """Faces found in Ray Data, the box regression fitted on train, every row's regressed box."""
        import ray

        frames = {s: data[s].dataset.map_batches(add_faces, batch_format="pandas", batch_size=16).to_pandas()
                  for s in ("train", "val")}
        for split, frame in frames.items():
            repeated = [k for k, n in Counter(frame["image_id"]).items() if n > 1]
            if repeated:
                raise FacelabError(f"mask-face: {split} has several masks in image '{repeated[0]}'; this method "
                                   "answers one mask per image (the Blitz layout): train `--task mask` on multi-face data")
        train = frames["train"]
        boxes = LowerFaceBox.fit(np.stack(train["face"]), np.stack(train["features"]), np.stack(train["box"]),
                                 np.stack(train["size"]))
        for frame in frames.values():
            frame["pred_box"] = [boxes.predict(None if np.isnan(f).any() else f, x, s)
                                 for f, x, s in zip(frame["face"], frame["features"], frame["size"])]
        keep = ["_row", "image_id", "path", "box", "label", "pred_box"]
        datasets = training_datasets(*(ray.data.from_pandas(frames[s][keep]) for s in ("train", "val")))
        labels = list(self.class_names(data))
        found = {f"{s}_face_found": float(np.mean([not np.isnan(f).any() for f in frames[s]["face"]])) for s in frames}
        return Prepared(datasets, {"labels": labels, "box_model": boxes.to_json(), **found})

    def trainer_inputs(self, config: dict, state: dict) -> tuple[MaskTypeRecipe, dict]:
        return MaskTypeRecipe(), {**config, **state}

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame | None) -> dict:
        state = self._prepared.state
        return {**metrics, "train_face_found": state["train_face_found"], "val_face_found": state["val_face_found"]}
