"""Face occlusion (seed 001, IDEMIA x Telecom Paris 2024): regress the occluded fraction of a face.

The seed's system: a ResNet-18 regressor trained with a weighted MSE whose weights are the inverse
frequency of 10 occlusion levels (steps of 0.025 up to 0.1, then 0.05 up to 0.35, then the rest),
times a female:male weight (the seed tried 1.0-1.5; Tune searches it with the learning rate);
its best model was an ensemble of two ResNet-18s, one for colour and one for greyscale images,
each with its own level weights (`ensemble: true`). No pretrained weights exist offline, so the
networks start from random init (the seed fine-tuned ImageNet weights).

Validation: 10% of the labelled train rows (seeded), scored as the challenge does
(Err_F, Err_M, Score; lower is better) next to a predict-the-train-mean baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field
import torch

from facelab import metrics as metrics_lib
from facelab.answers import Answer
from facelab.formats import Read
from facelab.formats.base import LAZY_STEP_CPUS
from facelab.formats.occlusion import drop_unlabelled
from facelab.image_requests import FaceImageRequest, demo_image_requests, request_rows
from facelab.task_config import ImagePredictorConfig, StartsFromBackbone
from facelab.tasks.torch_task import TorchTask
from facelab.vision import (ImagePredictor, ImageRecipe, is_grey, load_image, normalised, resnet18, run_net,
                            training_datasets)

LEVEL_EDGES = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35)  # the seed's 3rd labelling: 10 levels
LEVELS = len(LEVEL_EDGES) + 1
VAL_FRACTION, SPLIT_SEED = 0.1, 0  # the labelled train rows held out for validation


def levels(occlusion: np.ndarray) -> np.ndarray:
    return np.digitize(np.asarray(occlusion, float), LEVEL_EDGES)


def level_weights(occlusion: np.ndarray) -> list[float]:
    """Inverse frequency of each occlusion level, scaled so the rows' mean weight is 1."""
    counts = np.bincount(levels(occlusion), minlength=LEVELS).astype(float)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    mean = weights[levels(occlusion)].mean() if len(occlusion) else 1.0
    return (weights / mean).tolist()


def weight_columns(train) -> "ray.data.Dataset":  # noqa: F821
    """The train rows with their level weights: `w_level` over all rows, `w_group` within the
    row's colour or grey group (what each model of the ensemble trains with). Grey flags are
    read from the images (one pass)."""
    flagged = train.repartition(target_num_rows_per_block=1024).map_batches(  # blocks of 1024: parallel reads
        lambda b: {**b, "grey": np.array([is_grey(load_image(p)) for p in b["path"]])}, batch_format="numpy").materialize()
    stats = flagged.select_columns(["occlusion", "grey"]).to_pandas()
    grey = stats["grey"].to_numpy(bool)
    tables = {"w_level": level_weights(stats["occlusion"]),
              "w_group": {False: level_weights(stats["occlusion"][~grey]), True: level_weights(stats["occlusion"][grey])}}

    def add(batch: dict) -> dict:
        level = levels(batch["occlusion"])
        by_group = [tables["w_group"][bool(g)][k] for g, k in zip(batch["grey"], level)]
        return {**batch, "w_level": np.asarray(tables["w_level"], np.float32)[level],
                "w_group": np.asarray(by_group, np.float32)}

    return flagged.map_batches(add, batch_format="numpy", num_cpus=LAZY_STEP_CPUS)


class OcclusionNet(torch.nn.Module):
    """One ResNet-18 regressor, or (`ensemble`) a colour and a grey one, each image routed by
    its grey flag. Takes uint8 NCHW images."""

    def __init__(self, width: int = 64, ensemble: bool = False):
        super().__init__()
        self.nets = torch.nn.ModuleList(resnet18(1, width) for _ in range(2 if ensemble else 1))

    def forward(self, x, grey):
        x = normalised(x)
        if len(self.nets) == 1:
            return run_net(self.nets[0], x)[:, 0]
        out = x.new_zeros(len(x))
        for flag, net in zip((False, True), self.nets):
            rows = grey == flag
            if rows.any():
                out = out.index_put((rows,), run_net(net, x[rows])[:, 0])
            elif self.training:  # keep every parameter in the graph (DDP) without a forward pass
                out = out + 0.0 * sum(p.sum() for p in net.parameters())
        return out


class OcclusionRecipe(ImageRecipe):
    def build_model(self, config: dict):
        return OcclusionNet(int(config["width"]), bool(config["ensemble"]))

    def targets(self, batch: dict, images: list[np.ndarray], config: dict) -> dict[str, np.ndarray]:
        """Targets, grey flags and loss weights: the level weight (per colour/grey model with
        `ensemble`; 1 without `level_weights` and on validation rows) x the female weight."""
        occlusion = np.asarray(batch["occlusion"], np.float32)
        gender = np.asarray(batch["gender"], np.float32)
        column = "w_group" if config["ensemble"] else "w_level"
        use_levels = config["level_weights"] and column in batch
        weight = np.asarray(batch[column], np.float32) if use_levels else np.ones(len(occlusion), np.float32)
        weight = weight * np.where(gender > 0.5, 1.0, float(config["female_weight"])).astype(np.float32)
        grey = np.array([is_grey(i) for i in images], np.uint8)
        return {"occlusion": occlusion, "gender": gender, "grey": grey, "weight": weight}

    def loss(self, model, batch: dict, config: dict):
        pred = model(batch["image"], batch["grey"].bool())
        weight = batch["weight"]
        return (weight * (pred - batch["occlusion"]) ** 2).sum() / weight.sum().clamp_min(1e-8)

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        preds, truth, gender = [], [], []
        for batch in batches:
            preds.append(model(batch["image"], batch["grey"].bool()).clamp(0, 1))
            truth.append(batch["occlusion"])
            gender.append(batch["gender"])
        pred, truth, gender = (torch.cat(t).cpu().numpy() for t in (preds, truth, gender))
        return {**metrics_lib.fairness_score(pred, truth, gender), "mse": float(np.mean((pred - truth) ** 2))}


class OcclusionPredictor(ImagePredictor):
    """`occlusion` (a fraction in [0, 1]) for image rows; grey images go to the grey model."""

    recipe = OcclusionRecipe

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        grey = torch.tensor([is_grey(i) for i in images], device=self.device)
        return {"occlusion": self.model(x, grey).clamp(0, 1)}


class OcclusionRequest(FaceImageRequest):
    """A 224x224 face crop (any size is resized), or a list of them."""


class OcclusionAnswer(Answer):
    occlusion: float = Field(description="the share of the face that is occluded (0..1)")


class OcclusionConfig(ImagePredictorConfig, StartsFromBackbone):
    """The full (GPU) run: the seed's best model (a colour and a grey ResNet-18, level weights, 30 epochs)."""

    epochs: int = 30
    batch_size: int = 64
    weight_decay: float = 1e-4
    image_size: int = 224
    width: int = Field(64, ge=1)
    """base width of the ResNet-18 (64: torchvision's; smaller for CPU runs)"""
    ensemble: bool = True
    """two networks, one for colour and one for greyscale images, each with its own level weights"""
    level_weights: bool = True
    """weight the loss by the inverse frequency of the 10 occlusion levels"""
    female_weight: float = Field(1.0, gt=0)
    """loss weight of female faces (male faces weigh 1)"""
    aug_scale: float = 0.05
    aug_rotate: float = 5.0
    aug_shift: float = 0.03
    aug_colour: float = 0.15


class OcclusionTask(TorchTask):
    name = "occlusion"
    reference = "001 Face occlusion (IDEMIA x Telecom Paris 2024): ResNet-18, level/gender-weighted MSE, colour/grey ensemble"
    metric = "score"
    mode = "min"
    converters = ("occlusion",)
    fit_splits = ("train",)
    Config = OcclusionConfig
    # what `facelab demo` and CPU smoke runs override (a few minutes on a laptop)
    demo_config: ClassVar[dict] = {"epochs": 2, "image_size": 64, "width": 16, "batch_size": 32}
    Request = OcclusionRequest
    Answer = OcclusionAnswer
    predictor_class = OcclusionPredictor
    predict_on_gpu = True
    recipe = OcclusionRecipe()

    def split(self, data: dict[str, Read]):
        """(train, val): the labelled train rows, VAL_FRACTION held out with SPLIT_SEED."""
        labelled, _ = drop_unlabelled(data["train"].dataset)
        return labelled.train_test_split(test_size=VAL_FRACTION, shuffle=True, seed=SPLIT_SEED)

    def trial_data(self, data: dict[str, Read]) -> dict:
        train, val = self.split(data)
        return training_datasets(weight_columns(train), val)

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame | None) -> dict[str, float]:
        """The same validation rows scored for a predict-the-train-mean baseline."""
        train, val = self.split(data)
        truth = val.select_columns(["occlusion", "gender"]).to_pandas()
        mean = float(train.mean("occlusion"))
        baseline = metrics_lib.fairness_score(np.full(len(truth), mean), truth["occlusion"], truth["gender"])
        return {**metrics, **{f"baseline_{k}": v for k, v in baseline.items()}, "baseline_mean": mean,
                "train_rows": float(train.count()), "val_rows": float(len(truth))}

    def request_rows(self, request: OcclusionRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def answer(self, output: dict) -> dict:
        return {"occlusion": round(float(output["occlusion"]), 5)}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        first = pd.read_csv(Path(data) / "test_students.csv", sep=" ")["filename"][0]
        return demo_image_requests(Path(data) / "crops_100K" / first)

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["filename", "occlusion"]]
