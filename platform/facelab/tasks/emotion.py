"""HexaFace facial emotion recognition (seed 002, section 3.5): a VGG-like CNN on FER-2013.

The seed's network: six 3x3 convolutions (64, 64, pool, 128, 128, pool, 256, 256, pool), two
dense layers of 1024 and a softmax over the 7 emotions, trained from scratch with SGD and
momentum, augmented by shifts and zooms, with dropout; 65% accuracy on FER-2013. Here the same
network (batch norm after each convolution) trains through the shared Ray Train mechanism,
on greyscale (the network turns any RGB input into luminance first, so colour uploads work):
augmentation (horizontal flips, small shifts, rotations and zooms, brightness/contrast, random
erasing) runs in Ray Data (`EmotionRecipe.prepare`), the best epoch by PublicTest accuracy is
kept (training stops once it has not improved for `early_stop_patience` epochs), and
predictions average the image and its mirror image. Scored on PrivateTest (`facelab score`);
the model folder also holds the PublicTest confusion matrix and F1 per emotion.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from facelab import plots
from facelab.formats import Read
from facelab.formats.fer import EMOTIONS, SIZE, emotion_metrics
from facelab.image_requests import FaceImageRequest, demo_image_requests, request_rows
from facelab.tasks.torch_task import TorchTask
from facelab.vision import ImagePredictor, ImageRecipe, normalised, training_datasets

# ITU-R BT.601 luminance: how FER-2013's greyscale relates to colour photos
LUMA = (0.299, 0.587, 0.114)


class EmotionRequest(FaceImageRequest):
    """A face image (FER-like: the face fills the picture; any size, colour or grey), or a list
    of them; `detect: true` crops a wider photo to its largest face first."""


# --- the network ----------------------------------------------------------------------------

def vgg_layers(config: dict):
    """`blocks` blocks of two 3x3 conv-BN-ReLU layers and a max-pool (width `base`, doubling),
    then two dense layers of `fc` units with dropout, then the 7 emotion logits."""
    nn = torch.nn
    layers, channels = [], 1
    for block in range(int(config["blocks"])):
        width = int(config["base"]) * 2 ** block
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers += [nn.MaxPool2d(2), nn.Dropout(float(config["conv_dropout"]))]
    side = int(config["image_size"]) // 2 ** int(config["blocks"])
    fc, dropout = int(config["fc"]), float(config["dropout"])
    layers += [nn.Flatten(), nn.Linear(channels * side * side, fc), nn.ReLU(inplace=True), nn.Dropout(dropout),
               nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(fc, len(EMOTIONS))]
    return nn.Sequential(*layers)


class EmotionNet(torch.nn.Module):
    """uint8 NCHW RGB (grey as three equal channels) -> luminance -> the VGG layers -> 7 logits."""

    def __init__(self, config: dict):
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.vgg = vgg_layers(config)

    def forward(self, x):
        return self.vgg(normalised((x.float() * self.luma).sum(1, keepdim=True)))


def erased(images: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Random erasing: with `probability`, one rectangle of 2-20% of each image (aspect 0.3-3.3)
    becomes noise, the same in every channel. uint8 NCHW in and out (a copy)."""
    out = images.copy()
    height, width = images.shape[2:]
    for image in out:
        if rng.random() >= probability:
            continue
        area, aspect = rng.uniform(0.02, 0.2) * height * width, np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        h, w = min(height, int(round(np.sqrt(area * aspect)))), min(width, int(round(np.sqrt(area / aspect))))
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        image[:, y:y + h, x:x + w] = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return out


def class_probabilities(model, x, flip: bool):
    """Softmax over the emotions; with `flip`, averaged with the mirror image's."""
    probs = model(x).softmax(1)
    return (probs + model(x.flip(3)).softmax(1)) / 2 if flip else probs


class EmotionRecipe(ImageRecipe):
    """The shared image preparation (similarity transform, flip, brightness/contrast) plus
    random erasing; cross-entropy; SGD with Nesterov momentum (the seed's; or `optimizer:
    adamw`); LR halved on a PublicTest plateau (`schedule: plateau`) or the shared warm-up +
    cosine (`schedule: cosine`)."""

    def build_model(self, config: dict):
        return EmotionNet(config)

    def targets(self, batch: dict, images: list[np.ndarray], config: dict) -> dict[str, np.ndarray]:
        return {"label": np.array([EMOTIONS.index(v) for v in batch["label"]], np.int64)}

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        out = super().prepare(batch, config, train)
        if train:
            out["image"] = erased(out["image"], float(config["erase"]), np.random.default_rng())
        return out

    def loss(self, model, batch: dict, config: dict):
        return torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"], label_smoothing=float(config["label_smoothing"]))

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        from sklearn.metrics import f1_score

        probs, truth = [], []
        for batch in batches:
            probs.append(class_probabilities(model, batch["image"], bool(config.get("tta_flip"))))
            truth.append(batch["label"])
        p, y = torch.cat(probs), torch.cat(truth)
        pred = p.argmax(1)
        return {"val_accuracy": float((pred == y).float().mean()),
                "val_f1_macro": float(f1_score(y.cpu(), pred.cpu(), labels=range(len(EMOTIONS)), average="macro",
                                               zero_division=0)),
                "val_loss": float(torch.nn.functional.nll_loss(p.clamp_min(1e-8).log(), y))}

    def optimizer(self, model, config: dict):
        if config.get("optimizer") == "adamw":  # quicker to start on small data (tests, demo)
            return super().optimizer(model, config)
        return torch.optim.SGD(model.parameters(), lr=float(config["lr"]), momentum=float(config["momentum"]),
                               nesterov=True, weight_decay=float(config["weight_decay"]))

    def scheduler(self, optimizer, config: dict):
        if config.get("schedule") == "cosine":
            return super().scheduler(optimizer, config)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=float(config["lr_factor"]),
                                                          patience=int(config["lr_patience"]))


# --- prediction -----------------------------------------------------------------------------

class EmotionPredictor(ImagePredictor):
    """`label` (the emotion) and `p_<emotion>` for each of the 7, over `path` or `image` rows."""

    recipe = EmotionRecipe

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        return {"probs": self.model(x).softmax(1)}

    def finish(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = outputs["probs"]
        return {"label": np.array(EMOTIONS)[probs.argmax(1)], **{f"p_{e}": probs[:, i] for i, e in enumerate(EMOTIONS)}}


class EmotionTask(TorchTask):
    name = "emotion"
    seed = "002 HexaFace, 3.5: facial emotion recognition, VGG-like CNN on FER-2013"
    metric = "val_accuracy"
    mode = "max"
    # The full (GPU) run: up to 100 epochs of the seed's network, stopped 15 epochs after the best.
    default_config: ClassVar[dict] = {
        "epochs": 100, "early_stop_patience": 15, "batch_size": 64, "eval_batch_size": 512,
        "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "plateau", "lr_factor": 0.5, "lr_patience": 5,
        "warmup_epochs": 1, "image_size": SIZE, "base": 64, "blocks": 3, "fc": 1024, "dropout": 0.5,
        "conv_dropout": 0.1, "label_smoothing": 0.0,
        "aug_scale": 0.1, "aug_rotate": 10.0, "aug_shift": 0.1, "aug_colour": 0.2, "aug_grey": 0.0, "erase": 0.5,
        "tta_flip": True,
    }
    # what `facelab demo` and CPU smoke runs override
    # (few steps on a few hundred faces: AdamW and milder augmentation than the full run's)
    demo_config: ClassVar[dict] = {"epochs": 8, "base": 8, "fc": 64, "dropout": 0.1, "batch_size": 32,
                                   "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                   "erase": 0.0, "aug_rotate": 5.0, "aug_colour": 0.1, "aug_shift": 0.05}
    Request = EmotionRequest
    predictor_class = EmotionPredictor
    predict_on_gpu = True
    recipe = EmotionRecipe()

    def trial_data(self, data: dict[str, Read]) -> dict:
        """labels.csv lists FER by emotion: the train split is reshuffled every epoch."""
        return training_datasets(data["train"].dataset, data["val"].dataset)

    def after_fit(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float]) -> dict[str, float]:
        """PublicTest predicted once more by the kept epoch: confusion matrix and F1 per emotion."""
        from facelab.predict import predict_dataset

        val = data["val"].dataset
        truth = val.select_columns(["_row", "label"]).to_pandas()
        joined = truth.merge(predict_dataset(self, Path(model_dir), val)[["_row", "label"]], on="_row",
                             suffixes=("", "_pred"))
        plots.confusion_matrix_png(joined["label"], joined["label_pred"], EMOTIONS, Path(model_dir) / "confusion_matrix.png",
                                   title="emotion: PublicTest (val) predictions of the kept epoch")
        scores = emotion_metrics(joined["label"], joined["label_pred"])
        return {**metrics, **{f"val_{k}": v for k, v in scores.items() if k.startswith("f1_")}}

    def request_rows(self, request: EmotionRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def response(self, outputs: list[dict], batched: bool) -> dict:
        shaped = [{"emotion": str(o["label"]), "probabilities": {e: round(float(o[f"p_{e}"]), 4) for e in EMOTIONS}}
                  for o in outputs]
        return {"predictions": shaped} if batched else shaped[0]

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        labels = pd.read_csv(Path(data) / "labels.csv", dtype=str, keep_default_na=False)
        return demo_image_requests(Path(data) / labels.loc[labels["Usage"] == "PrivateTest", "file"].iloc[0])

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "file", "label"]]
