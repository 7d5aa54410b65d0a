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
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from facelab import plots
from facelab.answers import Answer
from facelab.formats import Read
from facelab.formats.fer import EMOTIONS, SIZE, emotion_metrics
from facelab.image_requests import FaceImageRequest, demo_image_requests, request_rows
from facelab.task_config import ImagePredictorConfig, StartsFromBackbone
from facelab.tasks.torch_task import ImageTorchTask
from facelab.vision import ImagePredictor, ImageRecipe, normalised, resnet18, run_net, zero_init

# ITU-R BT.601 luminance: how FER-2013's greyscale relates to colour photos
LUMA = (0.299, 0.587, 0.114)


class EmotionAnswer(Answer):
    """The most likely emotion and the probability of each of the 7."""

    emotion: str
    probabilities: dict[str, float]


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
    """uint8 NCHW RGB (grey as three equal channels) -> luminance -> the VGG layers -> 7 logits;
    with `arch: resnet`, the luminance in all three channels -> a ResNet-18 trunk of `width` (the
    layout a facelab backbone starts, facelab.backbone) -> dropout -> 7 logits."""

    def __init__(self, config: dict):
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        if config.get("arch") == "resnet":  # models stored before `arch` existed are VGG
            self.trunk = resnet18(1, int(config["width"]))
            features = self.trunk.fc.in_features
            self.trunk.fc = torch.nn.Identity()
            self.head = torch.nn.Sequential(torch.nn.Dropout(float(config["dropout"])),
                                            torch.nn.Linear(features, len(EMOTIONS)))
            zero_init(self.head[1])
        else:
            self.vgg = vgg_layers(config)

    def forward(self, x):
        grey = normalised((x.float() * self.luma).sum(1, keepdim=True))
        if hasattr(self, "trunk"):
            return self.head(run_net(self.trunk, grey.expand(-1, 3, -1, -1)))
        return self.vgg(grey)


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
            probs.append(class_probabilities(model, batch["image"], bool(config["tta_flip"])))
            truth.append(batch["label"])
        p, y = torch.cat(probs), torch.cat(truth)
        pred = p.argmax(1)
        return {"val_accuracy": float((pred == y).float().mean()),
                "val_f1_macro": float(f1_score(y.cpu(), pred.cpu(), labels=range(len(EMOTIONS)), average="macro",
                                               zero_division=0)),
                "val_loss": float(torch.nn.functional.nll_loss(p.clamp_min(1e-8).log(), y))}

    def optimizer(self, model, config: dict):
        if config["optimizer"] == "adamw":  # quicker to start on small data (tests, demo)
            return super().optimizer(model, config)
        return torch.optim.SGD(model.parameters(), lr=float(config["lr"]), momentum=float(config["momentum"]),
                               nesterov=True, weight_decay=float(config["weight_decay"]))

    def scheduler(self, optimizer, config: dict):
        if config["schedule"] == "cosine":
            return super().scheduler(optimizer, config)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=float(config["lr_factor"]),
                                                          patience=int(config["lr_patience"]))


# --- prediction -----------------------------------------------------------------------------

class EmotionPredictor(ImagePredictor):
    """`label` (the emotion) and `p_<emotion>` for each of the 7, over `path` or `image` rows. A
    model folder fused with mediapipe's mesh (`facelab fuse-mesh`, facelab.fusion.MeshFusion) meshes
    each image too and answers the fused probabilities."""

    recipe = EmotionRecipe

    def __init__(self, model_dir: str):
        from facelab.fusion import MeshFusion, MeshGeometry

        super().__init__(model_dir)
        self.fusion = MeshFusion.load(Path(model_dir))
        self.mesh = MeshGeometry() if self.fusion is not None else None

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        return {"probs": self.model(x).softmax(1)}

    def finish(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = outputs["probs"]
        return {"label": np.array(EMOTIONS)[probs.argmax(1)], **{f"p_{e}": probs[:, i] for i, e in enumerate(EMOTIONS)}}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = super().__call__(batch)
        if self.fusion is None:
            return result
        from facelab.vision import load_image

        images = batch["image"] if "image" in batch else [load_image(p) for p in batch["path"]]
        cnn = np.stack([result[f"p_{e}"] for e in EMOTIONS], axis=1)
        return {**result, **self.finish({"probs": self.fusion.predict_proba(cnn, self.mesh.geometry(images))})}


class EmotionConfig(ImagePredictorConfig, StartsFromBackbone):
    """The full (GPU) run: up to 100 epochs of the seed's network, stopped 15 epochs after the best."""

    epochs: int = 100
    early_stop_patience: int | None = 15
    batch_size: int = 64
    eval_batch_size: int | None = 512
    optimizer: Literal["sgd", "adamw"] = "sgd"
    """SGD with Nesterov momentum (the seed's), or AdamW (quicker to start on small data)"""
    lr: float = 0.01
    momentum: float = Field(0.9, ge=0, lt=1)
    """sgd: momentum"""
    weight_decay: float = 5e-4
    schedule: Literal["plateau", "cosine"] = "plateau"
    """learning rate: cut on a PublicTest accuracy plateau, or warm-up then cosine decay"""
    lr_factor: float = Field(0.5, gt=0, lt=1)
    """plateau: the learning rate is multiplied by this on a plateau"""
    lr_patience: int = Field(5, ge=0)
    """plateau: epochs without improvement before the learning rate is cut"""
    warmup_epochs: int = 1
    """cosine: epochs of linear learning-rate warm-up before the decay"""
    image_size: int = SIZE
    arch: Literal["vgg", "resnet"] = "vgg"
    """the seed's VGG layout, or a ResNet-18 trunk (what a `backbone` starts)"""
    width: int = Field(32, ge=1)
    """resnet: base width of the ResNet-18 (64: torchvision's)"""
    base: int = Field(64, ge=1)
    """channels of the first VGG block (doubling in each next block)"""
    blocks: int = Field(3, ge=1)
    """VGG blocks: two 3x3 conv-BN-ReLU layers and a max-pool each"""
    fc: int = Field(1024, ge=1)
    """units of each of the two dense layers"""
    dropout: float = Field(0.5, ge=0, lt=1)
    """dropout after each dense layer"""
    conv_dropout: float = Field(0.1, ge=0, lt=1)
    """dropout after each VGG block"""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """label smoothing of the cross-entropy"""
    aug_shift: float = 0.1
    erase: float = Field(0.5, ge=0, le=1)
    """probability that a rectangle of a training image becomes noise (random erasing)"""
    tta_flip: bool = True

    @model_validator(mode="after")
    def _pooled_side(self):
        if self.image_size < 2 ** self.blocks:
            raise ValueError(f"image_size {self.image_size} is too small for {self.blocks} pooling blocks")
        if self.backbone and self.arch != "resnet":
            raise ValueError("backbone: a backbone starts a ResNet trunk; set arch: resnet")
        return self


class EmotionTask(ImageTorchTask):
    name = "emotion"
    reference = "002 HexaFace, 3.5: facial emotion recognition, VGG-like CNN on FER-2013"
    metric = "val_accuracy"
    mode = "max"
    Config = EmotionConfig
    # what `facelab demo` and CPU smoke runs override
    # (few steps on a few hundred faces: AdamW and milder augmentation than the full run's)
    demo_config: ClassVar[dict] = {"epochs": 4, "base": 8, "fc": 64, "dropout": 0.1, "batch_size": 32,
                                   "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                   "erase": 0.0, "aug_rotate": 5.0, "aug_colour": 0.1, "aug_shift": 0.05}
    report_split = "val"
    Request = EmotionRequest
    Answer = EmotionAnswer
    predictor_class = EmotionPredictor
    predict_on_gpu = True
    recipe = EmotionRecipe()

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame) -> dict[str, float]:
        """PublicTest as predicted by the kept epoch: confusion matrix and F1 per emotion."""
        plots.confusion_matrix_png(predictions["label"], predictions["label_pred"], EMOTIONS,
                                   Path(model_dir) / "confusion_matrix.png",
                                   title="emotion: PublicTest (val) predictions of the kept epoch")
        scores = emotion_metrics(predictions["label"], predictions["label_pred"])
        return {**metrics, **{f"val_{k}": v for k, v in scores.items() if k.startswith("f1_")}}

    def request_rows(self, request: EmotionRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def answer(self, output: dict) -> dict:
        return {"emotion": str(output["label"]),
                "probabilities": {e: round(float(output[f"p_{e}"]), 4) for e in EMOTIONS}}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        labels = pd.read_csv(Path(data) / "labels.csv", dtype=str, keep_default_na=False)
        return demo_image_requests(Path(data) / labels.loc[labels["Usage"] == "PrivateTest", "file"].iloc[0])

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "file", "label"]]
