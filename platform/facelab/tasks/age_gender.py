"""HexaFace age and gender (seed 002) on UTKFace: one CNN with an age, a gender and a race head.

HexaFace treats age as 101 classes (0..100) and predicts the expectation of the softmax (MAE
about 6 on IMDB-WIKI, with VGG-Face transfer learning) and reaches 90% gender accuracy (VGG16
features). Offline there are no pretrained weights, so this is one ResNet-18 trained from
scratch on UTKFace's seeded train split, with what makes that work on a few thousand faces:
- age as a label distribution (DLDL-v2): a Gaussian of `age_sigma` years around the true age
  is the target of the 101-way softmax (KL), plus `age_l1` x the L1 error of its expectation;
- gender and race (UTKFace's five labels) as label-smoothed cross-entropy heads;
- augmentation (similarity transform, flip, brightness/contrast, some greyscale), dropout,
  AdamW, linear warm-up then cosine LR, and mirror test-time augmentation (`tta_flip`).
Checkpoints are chosen by validation age MAE; after training the validation split is predicted
once more to report every metric per gender and per race (the fairness slices) next to a
baseline that predicts the train median age and the majority gender and race.
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
from facelab.formats import Read
from facelab.formats.utkface import GENDERS, RACES, confusion_plots, slice_scores
from facelab.image_requests import FaceImageRequest, demo_image_requests, request_rows
from facelab.face_attributes import (AGES, FaceAttributesConfig, GenderAnswer, age_distribution, attributes_answer,
                                     expected_age)
from facelab.task_config import StartsFromBackbone
from facelab.tasks.torch_task import ImageTorchTask
from facelab.vision import ImagePredictor, ImageRecipe, normalised, resnet18, run_net, zero_init


class AgeGenderNet(torch.nn.Module):
    """A ResNet-18 trunk with three linear heads; takes uint8 NCHW images."""

    def __init__(self, width: int = 64, dropout: float = 0.2):
        super().__init__()
        self.trunk = resnet18(1, width)
        features = self.trunk.fc.in_features
        self.trunk.fc = torch.nn.Identity()
        self.dropout = torch.nn.Dropout(dropout)
        self.age = torch.nn.Linear(features, AGES)
        self.gender = torch.nn.Linear(features, len(GENDERS))
        self.race = torch.nn.Linear(features, len(RACES))
        for head in (self.age, self.gender, self.race):
            zero_init(head)

    def forward(self, x) -> dict:
        f = self.dropout(run_net(self.trunk, normalised(x)))
        return {"age": self.age(f), "gender": self.gender(f), "race": self.race(f)}


def _mean(parts: list) -> float:
    return float(torch.cat(parts).float().mean())


class AgeGenderRecipe(ImageRecipe):
    def build_model(self, config: dict):
        return AgeGenderNet(int(config["width"]), float(config["dropout"]))

    def targets(self, batch: dict, images: list[np.ndarray], config: dict) -> dict[str, np.ndarray]:
        return {k: np.asarray(batch[k], np.int64) for k in ("age", "gender", "race")}

    def loss(self, model, batch: dict, config: dict):
        out = model(batch["image"])
        log_p = F.log_softmax(out["age"], 1)
        age = batch["age"].float().clamp(0, AGES - 1)
        loss = F.kl_div(log_p, age_distribution(age, float(config["age_sigma"])), reduction="batchmean")
        loss = loss + float(config["age_l1"]) * (expected_age(log_p.exp()) - age).abs().mean()
        smoothing = float(config["label_smoothing"])
        for head in ("gender", "race"):
            loss = loss + float(config[f"{head}_weight"]) * F.cross_entropy(out[head], batch[head],
                                                                           label_smoothing=smoothing)
        return loss

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        errors, gender_hits, race_hits = [], [], []
        for batch in batches:
            out = model(batch["image"])
            errors.append((expected_age(out["age"].softmax(1)) - batch["age"].float()).abs())
            gender_hits.append(out["gender"].argmax(1) == batch["gender"])
            race_hits.append(out["race"].argmax(1) == batch["race"])
        return {"age_mae": _mean(errors), "gender_accuracy": _mean(gender_hits), "race_accuracy": _mean(race_hits)}


class AgeGenderPredictor(ImagePredictor):
    """age (years, the expectation), gender (0 male, 1 female) with p_female, race (0..4) with
    p_<race> per UTKFace race."""

    recipe = AgeGenderRecipe

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        out = self.model(x)
        return {head: out[head].softmax(1) for head in ("age", "gender", "race")}

    def finish(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = {"age": (outputs["age"] * np.arange(AGES)).sum(1), "gender": outputs["gender"].argmax(1),
                  "p_female": outputs["gender"][:, 1], "race": outputs["race"].argmax(1)}
        result.update({f"p_{name}": outputs["race"][:, i] for i, name in enumerate(RACES)})
        return result


class AgeGenderAnswer(Answer):
    """Age in years (the expectation over 0..100), gender and race (UTKFace's five)."""

    age: float
    gender: GenderAnswer
    race: LabelProbabilities


class AgeGenderRequest(FaceImageRequest):
    """A face crop (UTKFace-like: the face fills most of the picture), or a list of them;
    `detect: true` crops a wider photo to its largest face first."""


def baseline(train: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Predict the train median age and the majority gender and race for everyone."""
    guess = pd.DataFrame({"age": np.full(len(truth), float(train["age"].median())),
                          "gender": np.full(len(truth), int(train["gender"].mode()[0])),
                          "race": np.full(len(truth), int(train["race"].mode()[0]))})
    return {f"baseline_{k}": v for k, v in slice_scores(truth, guess).items() if "/" not in k and k != "n"}


class AgeGenderConfig(FaceAttributesConfig, StartsFromBackbone):
    """One ResNet-18 (random init, or a facelab backbone's trunk) with an age, a gender and a race head."""

    epochs: int = 40
    warmup_epochs: int = 2
    image_size: int = 112
    width: int = Field(64, ge=1)
    """base width of the ResNet-18 (64: torchvision's; smaller for CPU runs)"""
    aug_grey: float = 0.1


class AgeGenderTask(ImageTorchTask):
    name = "age-gender"
    reference = "002 HexaFace: age (101 classes, expectation) and gender, one CNN (+ race) on UTKFace"
    metric = "age_mae"
    mode = "min"
    Config = AgeGenderConfig
    # what `facelab demo` and CPU smoke runs override (a few minutes on a laptop)
    demo_config: ClassVar[dict] = {"epochs": 2, "image_size": 64, "width": 16, "batch_size": 32}
    report_split = "val"
    Request = AgeGenderRequest
    Answer = AgeGenderAnswer
    predictor_class = AgeGenderPredictor
    predict_on_gpu = True
    recipe = AgeGenderRecipe()

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame) -> dict[str, float]:
        """The validation split as predicted by the kept model: every metric per gender and race,
        gender/race confusion matrices, and the baseline on the same rows."""
        truth = predictions[["file", "age", "gender", "race"]]
        pred = pd.DataFrame({attr: predictions[f"{attr}_pred"] for attr in ("age", "gender", "race")})
        confusion_plots(truth, pred, Path(model_dir), "validation split")
        labels = data["train"].dataset.select_columns(["age", "gender", "race"]).to_pandas()
        scores = {f"val_{k}": v for k, v in slice_scores(truth, pred).items()}
        return {**metrics, **scores, **baseline(labels, truth), "train_rows": float(len(labels))}

    def request_rows(self, request: AgeGenderRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def answer(self, output: dict) -> dict:
        return attributes_answer(output)

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        return demo_image_requests(Path(data) / self.format.test_order(Path(data))[0])

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["file", "age", "gender", "race"]]
