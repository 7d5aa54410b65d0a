"""The facelab face backbone (issue 23): one ResNet-18 trunk pretrained on every labelled face the
project has, for the image tasks to start from.

No pretrained face weights ship offline, and each image task has a few thousand faces at most
(100 for the Blitz masks), so each one trained alone from random init stays far from the
reference systems. This task trains one trunk on UTKFace (age as a label distribution, gender,
race) and FER-2013 (emotion) at once (formats/backbone.py: one data root holding both, each
source's own train / val / test split, so no face a task is tested on is seen): every row
trains the heads its source labels, a head's loss is the mean over the rows that have its label,
and the heads' losses are summed with their weights. Greyscale views (`aug_grey`) make colour
UTKFace faces look like FER's. With `occluder_weight` > 0 the trunk also learns from an objective
that makes its own labels: some training images get a drawn rectangle or ellipse (a flat colour or
a patch of another face), and an extra head predicts how much of each cell of a 4x4 grid it covers,
on every row of every source. The model is also a multi-attribute predictor (age, gender, race,
emotion), served like any task; its trunk is what `backbone: <run id | "promoted">` in the config
of age-gender, emotion (`arch: resnet`), occlusion and mask-face starts from (facelab.backbone).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field

from facelab.answers import Answer, LabelProbabilities
from facelab.formats.backbone import AGE_TOLERANCE, LABELS, listing_order
from facelab.formats.fer import EMOTIONS
from facelab.formats.utkface import GENDERS, RACES
from facelab.image_requests import FaceImageRequest, demo_image_requests, request_rows
from facelab.face_attributes import (AGES, FaceAttributesConfig, GenderAnswer, age_distribution, attributes_answer,
                                     expected_age)
from facelab.tasks.torch_task import ImageTorchTask
from facelab.vision import ImagePredictor, ImageRecipe, normalised, resnet18, run_net, stacked, zero_init

HEADS = {"age": AGES, "gender": len(GENDERS), "race": len(RACES), "emotion": len(EMOTIONS)}  # the label heads
GRID = 4  # the occluder head predicts the covered fraction of each cell of a GRID x GRID grid
OCCLUDER_SIDE = (0.1, 0.5)  # an occluder's width and height, as fractions of the image's side
VAL_OCCLUDER_SEED = 0  # the validation images' occluders are the same draw in every run


def occluders_on(config: dict) -> bool:
    """Whether the config trains the drawn-occluder objective (a stored config from before it
    existed has no `occluder_weight`: off)."""
    return float(config.get("occluder_weight", 0)) > 0


def draw_occluders(images: list[np.ndarray], rng: np.random.Generator, p: float) -> tuple[list[np.ndarray], np.ndarray]:
    """(copies of the HxWx3 uint8 `images`, each with chance `p` of one drawn occluder; the float32
    (N, GRID*GRID) fraction of each grid cell, row-major, that the occluder covers: zeros without one).

    An occluder is a filled rectangle or ellipse (random angle), each side 10-50% of the image's,
    anywhere inside the image, filled with a random flat colour or with the same region of another
    image of the batch (so colour alone does not find it)."""
    import cv2

    out, targets = [image.copy() for image in images], np.zeros((len(images), GRID * GRID), np.float32)
    for i, image in enumerate(out):
        if rng.random() >= p:
            continue
        h, w = image.shape[:2]
        bw, bh = (np.array([w, h]) * rng.uniform(*OCCLUDER_SIDE, 2)).round().astype(int).clip(1)
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        mask = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            mask[y:y + bh, x:x + bw] = 1
        else:
            centre, axes = (x + bw // 2, y + bh // 2), (max(1, bw // 2), max(1, bh // 2))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
        covered = mask.astype(bool)
        if len(images) > 1 and rng.random() < 0.5:
            other = (i + int(rng.integers(1, len(images)))) % len(images)
            image[covered] = images[other][covered]
        else:
            image[covered] = rng.integers(0, 256, 3, dtype=np.uint8)
        rows, cols = np.linspace(0, h, GRID + 1).astype(int), np.linspace(0, w, GRID + 1).astype(int)
        cells = np.add.reduceat(np.add.reduceat(covered.astype(np.float32), rows[:-1], 0), cols[:-1], 1)
        targets[i] = (cells / np.outer(np.diff(rows), np.diff(cols))).ravel()
    return out, targets


class BackboneNet(torch.nn.Module):
    """uint8 NCHW RGB -> a ResNet-18 trunk (`trunk`, what tasks start from) -> dropout -> one
    linear head per label (age over 0..100, gender, race, emotion), and with `occluder` the
    drawn-occluder head (`occluder`: GRID*GRID logits of the covered fractions)."""

    def __init__(self, width: int, dropout: float, occluder: bool = False):
        super().__init__()
        self.trunk = resnet18(1, width)
        features = self.trunk.fc.in_features
        self.trunk.fc = torch.nn.Identity()
        self.dropout = torch.nn.Dropout(dropout)
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(features, size) for name, size in HEADS.items()})
        # only built when trained: a model folder's weights then always match its config, also a
        # folder stored before the objective existed (load_model loads strictly)
        self.occluder = torch.nn.Linear(features, GRID * GRID) if occluder else None
        for head in [*self.heads.values(), *([self.occluder] if occluder else [])]:
            zero_init(head)

    def forward(self, x) -> dict:
        features = self.dropout(run_net(self.trunk, normalised(x)))
        out = {name: head(features) for name, head in self.heads.items()}
        if self.occluder is not None:
            out["occluder"] = self.occluder(features)
        return out


def _masked_mean(values, mask):
    """Mean of `values` over the rows of `mask` (0 when none: the head still joins the graph, as DDP
    needs every parameter used in every step)."""
    return (values * mask).sum() / mask.sum().clamp_min(1)


class BackboneRecipe(ImageRecipe):
    def build_model(self, config: dict):
        return BackboneNet(int(config["width"]), float(config["dropout"]), occluder=occluders_on(config))

    def targets(self, batch: dict, images: list[np.ndarray], config: dict) -> dict[str, np.ndarray]:
        return {label: np.asarray(batch[label], np.int64) for label in LABELS}

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        """ImageRecipe's, and with the occluder objective on, the `occluder` grid targets of every
        row: a training image gets its occluder in place, after the augmentation (fresh randomness
        every batch), a validation image in an extra `occluded` copy (VAL_OCCLUDER_SEED: the same
        draw every epoch and run), the label metrics staying on the clean images."""
        raw, images = self.images(batch, config, train)
        prepared = {"image": stacked(images), **self.targets(batch, raw, config)}
        if occluders_on(config):
            rng = np.random.default_rng() if train else np.random.default_rng(VAL_OCCLUDER_SEED)
            occluded, prepared["occluder"] = draw_occluders(images, rng, float(config["occluder_p"]))
            prepared["image" if train else "occluded"] = stacked(occluded)
        return prepared

    def loss(self, model, batch: dict, config: dict):
        out = model(batch["image"])
        smoothing = float(config["label_smoothing"])
        has_age = (batch["age"] >= 0).float()
        age = batch["age"].float().clamp(0, AGES - 1)
        log_p = F.log_softmax(out["age"], 1)
        age_loss = F.kl_div(log_p, age_distribution(age, float(config["age_sigma"])), reduction="none").sum(1)
        age_loss = age_loss + float(config["age_l1"]) * (expected_age(log_p.exp()) - age).abs()
        total = float(config["age_weight"]) * _masked_mean(age_loss, has_age)
        for head in ("gender", "race", "emotion"):
            labels = batch[head]
            ce = F.cross_entropy(out[head], labels.clamp_min(0), reduction="none", label_smoothing=smoothing)
            total = total + float(config[f"{head}_weight"]) * _masked_mean(ce, (labels >= 0).float())
        if occluders_on(config):  # every row has its target: the head joins the graph every step
            occluder = F.binary_cross_entropy_with_logits(out["occluder"], batch["occluder"].float())
            total = total + float(config["occluder_weight"]) * occluder
        return total

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        errors, hits, occluder_errors = [], {head: [] for head in ("gender", "race", "emotion")}, []
        for batch in batches:
            out = model(batch["image"])
            if occluders_on(config):  # every cell of every row, on the drawn copies
                covered = model(batch["occluded"])["occluder"].sigmoid()
                occluder_errors.append((covered - batch["occluder"]).abs().flatten())
            faces = batch["age"] >= 0
            errors.append((expected_age(out["age"][faces].softmax(1)) - batch["age"][faces].float()).abs())
            for head, found in hits.items():
                labelled = batch[head] >= 0
                found.append(out[head][labelled].argmax(1) == batch[head][labelled])
        metrics = {}
        error = torch.cat(errors).float()
        if len(error):
            metrics.update({"age_mae": float(error.mean()),
                            f"age_within_{AGE_TOLERANCE}": float((error <= AGE_TOLERANCE).float().mean())})
        for head, found in hits.items():
            right = torch.cat(found).float()
            if len(right):
                metrics[f"{head}_accuracy"] = float(right.mean())
        accuracies = [v for k, v in metrics.items() if k.endswith("_accuracy") or k.startswith("age_within")]
        metrics["mean_accuracy"] = float(np.mean(accuracies))
        if occluder_errors:  # not part of mean_accuracy: the metric stays the label heads'
            metrics["occluder_mae"] = float(torch.cat(occluder_errors).mean())
        return metrics


class BackbonePredictor(ImagePredictor):
    """age (years, the expectation), gender with p_female, race with p_<race>, emotion with
    p_<emotion>."""

    recipe = BackboneRecipe

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        out = self.model(x)
        return {head: out[head].softmax(1) for head in HEADS}

    def finish(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = {"age": (outputs["age"] * np.arange(AGES)).sum(1), "gender": outputs["gender"].argmax(1),
                  "p_female": outputs["gender"][:, 1], "race": outputs["race"].argmax(1),
                  "emotion": outputs["emotion"].argmax(1)}
        result.update({f"p_{name}": outputs["race"][:, i] for i, name in enumerate(RACES)})
        result.update({f"p_{name}": outputs["emotion"][:, i] for i, name in enumerate(EMOTIONS)})
        return result


class BackboneAnswer(Answer):
    """Every attribute the backbone's heads predict: age in years, gender, race (UTKFace's five)
    and emotion (FER-2013's seven)."""

    age: float
    gender: GenderAnswer
    race: LabelProbabilities
    emotion: LabelProbabilities


class BackboneRequest(FaceImageRequest):
    """A face crop (the face fills most of the picture), or a list of them; `detect: true` crops
    a wider photo to its largest face first."""


class BackboneConfig(FaceAttributesConfig):
    """The CPU-sized pretraining run (64 px, width 32); a larger width and size are the GPU job."""

    epochs: int = 12
    eval_batch_size: int | None = 256
    warmup_epochs: int = 1
    image_size: int = 64
    width: int = Field(32, ge=1)
    """base width of the ResNet-18 trunk (the tasks that start from it take the same width)"""
    age_weight: float = Field(1.0, ge=0)
    """weight of the age head's loss"""
    emotion_weight: float = Field(1.0, ge=0)
    """weight of the emotion head's cross-entropy"""
    occluder_weight: float = Field(0.0, ge=0)
    """weight of the drawn-occluder head's loss (each 4x4 grid cell's covered fraction; 0: off)"""
    occluder_p: float = Field(0.5, ge=0, le=1)
    """chance that an image gets a drawn occluder (with occluder_weight > 0)"""
    aug_grey: float = 0.3


class BackboneTask(ImageTorchTask):
    name = "backbone"
    reference = "issue 23: one face trunk pretrained on UTKFace (age, gender, race) and FER-2013 (emotion)"
    metric = "mean_accuracy"
    mode = "max"
    Config = BackboneConfig
    demo_config: ClassVar[dict] = {"epochs": 2, "image_size": 48, "width": 8, "batch_size": 32}
    Request = BackboneRequest
    Answer = BackboneAnswer
    predictor_class = BackbonePredictor
    predict_on_gpu = True
    recipe = BackboneRecipe()

    def request_rows(self, request: BackboneRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def answer(self, output: dict) -> dict:
        return {**attributes_answer(output),
                "emotion": {"label": EMOTIONS[int(output["emotion"])],
                            "probabilities": {name: round(float(output[f"p_{name}"]), 4) for name in EMOTIONS}}}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        return demo_image_requests(Path(data) / self.format.test_rows(Path(data))["file"].iloc[0])

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """In the test listing's order."""
        return listing_order(predictions)[["file", "age", "gender", "race", "emotion"]]
