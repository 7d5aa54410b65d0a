"""What the face-image tasks that train through facelab.torch_train share (occlusion, age-gender, emotion).

- Images: load, resize, augment (one random similarity transform, flip, brightness/contrast,
  optional greyscale) and stack as uint8 NCHW; the model normalises, so Ray Data moves a
  quarter of the bytes and predictors feed the same uint8 arrays.
- Models: ResNet-18 (torchvision's, random init: no weights are downloaded), or the same
  layout at another base width for CPU-sized runs.
- Training plumbing: a recipe base class (preparation inside Ray Data, warm-up + cosine LR) and
  shuffled small-block datasets for `fit_torch` (tasks subclass facelab.tasks.torch_task.TorchTask).
- Prediction: a batch predictor base over `path` (batch jobs) or `image` (Serve) rows, with
  optional mirror test-time augmentation (the HTTP requests are `facelab.image_requests`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np

from facelab.errors import FacelabError
from facelab.torch_train import CONFIG_FILE, PREPARE_CPUS, TorchRecipe, load_model

# rows per Ray Data block, the unit of parallel image preparation: enough blocks for every
# preparation task the cluster runs at once, but no smaller than MIN (a task per block costs about
# 25 ms here: 64-row blocks prepared 1000 emotion images at 0.52 ms each, 256-row ones at 0.25 ms)
# and no larger than MAX (a block of prepared images lives in the object store)
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 64, 512
KEEP_COLUMNS = ("_row", "file", "filename")  # identifiers a predictor passes through


# --- images ----------------------------------------------------------------------------------

def load_image(path: str) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (FacelabError naming the file if it cannot be read)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FacelabError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def resized(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[0] == image.shape[1] == size:
        return image
    shrink = min(image.shape[:2]) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def is_grey(image: np.ndarray, tolerance: float = 2.0) -> bool:
    """True when the three channels are (JPEG-)equal: a greyscale photo stored as RGB."""
    pixels = np.asarray(image, np.int16)
    return float(np.abs(pixels[..., 0] - pixels[..., 1]).mean() + np.abs(pixels[..., 1] - pixels[..., 2]).mean()) \
        < tolerance


def augmented(image: np.ndarray, size: int, rng: np.random.Generator, config: dict) -> np.ndarray:
    """One random view: similarity transform (aug_scale, aug_rotate degrees, aug_shift of the
    side), horizontal flip, brightness/contrast (aug_colour) and greyscale (aug_grey), at size."""
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w) * (1 + rng.uniform(-1, 1) * config["aug_scale"])
    angle = rng.uniform(-1, 1) * config["aug_rotate"]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += np.array([size / 2 - w / 2, size / 2 - h / 2]) + rng.uniform(-1, 1, 2) * config["aug_shift"] * size
    if rng.random() < 0.5:
        matrix = np.array([[-1, 0, size - 1], [0, 1, 0]], np.float64) @ np.vstack([matrix, [0, 0, 1]])
    out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    colour = config["aug_colour"]
    if colour:
        gain, bias = 1 + rng.uniform(-colour, colour), rng.uniform(-colour, colour) * 64
        out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if rng.random() < config["aug_grey"]:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    return out


def stacked(images: list[np.ndarray]) -> np.ndarray:
    """HxWx3 uint8 images of one size as a uint8 NCHW array."""
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def input_images(batch: dict, config: dict, train: bool, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """The batch's images at the model's input size: loaded from `path` (or given as `image`),
    augmented when training."""
    size = int(config["image_size"])
    raw = [rgb(i) for i in batch["image"]] if "image" in batch else [load_image(p) for p in batch["path"]]
    if train:
        rng = rng or np.random.default_rng()
        return [augmented(image, size, rng, config) for image in raw]
    return [resized(image, size) for image in raw]


# --- models ----------------------------------------------------------------------------------

def resnet18(outputs: int, width: int = 64):
    """ResNet-18, random init: torchvision's own at width 64, else the same layout (7x7 stem,
    four stages of two basic blocks) with `width`, 2, 4 and 8 x `width` channels. The output
    layer starts at zero (a regressor starts from its bias, a classifier from uniform
    probabilities), which trains much faster from scratch."""
    import torch
    from torchvision.models import resnet18 as tv_resnet18
    from torchvision.models.resnet import BasicBlock

    net = tv_resnet18(weights=None, num_classes=outputs)
    if width != 64:
        net.inplanes = width
        net.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = torch.nn.BatchNorm2d(width)
        for i in range(4):
            setattr(net, f"layer{i + 1}", net._make_layer(BasicBlock, width * 2 ** i, 2, stride=1 if i == 0 else 2))
        net.fc = torch.nn.Linear(width * 8, outputs)
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    zero_init(net.fc)
    return net


def zero_init(layer) -> None:
    import torch

    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)


def run_net(net, x):
    """`net(x)`; a lone training image is normalised with the running BatchNorm statistics
    (the statistics of one image are undefined once a feature map is 1x1: small inputs, a last
    batch of one, one image of a kind in an ensemble's batch)."""
    if not (net.training and len(x) == 1):
        return net(x)
    net.eval()
    try:
        return net(x)
    finally:
        net.train()


def normalised(x):
    """uint8 NCHW -> float, about zero mean and unit spread."""
    return (x.float() / 255.0 - 0.5) / 0.25


# --- training --------------------------------------------------------------------------------

class ImageRecipe(TorchRecipe):
    """A TorchRecipe over image rows: `prepare` makes `image` (uint8 NCHW) and adds the task's
    `targets`; the LR warms up linearly for `warmup_epochs`, then follows a cosine to zero."""

    def targets(self, batch: dict, images: list[np.ndarray], config: dict) -> dict[str, np.ndarray]:
        return {}

    def images(self, batch: dict, config: dict, train: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(the rows' images as read, the model's input images: sized and, in training, augmented)."""
        raw = [load_image(p) for p in batch["path"]]
        return raw, input_images({"image": raw}, config, train)

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        raw, images = self.images(batch, config, train)
        return {"image": stacked(images), **self.targets(batch, raw, config)}

    def scheduler(self, optimizer, config: dict):
        import torch

        epochs, warmup = int(config["epochs"]), int(config["warmup_epochs"])

        def factor(epoch: int) -> float:  # epoch = epochs finished; the LR of the next one
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_datasets(train, val, seed: int | None = None) -> dict:
    """fit_torch's datasets, both in blocks sized so that image preparation runs as parallel Ray
    Data tasks on every CPU (`block_rows`): train's blocks in a new random order every epoch, its
    rows shuffled again within each worker's buffer (fit_torch), which costs no all-to-all shuffle
    per epoch. The rows (paths and labels, a few bytes each) are shuffled once first: listings
    sorted by label (FER's labels.csv, a data root of several sources) would otherwise give blocks,
    and so batches, of one class."""
    shuffled = train.random_shuffle(seed=seed).materialize()
    rows = block_rows(shuffled.count())
    blocks = shuffled.repartition(target_num_rows_per_block=rows).materialize()
    return {"train": blocks.randomize_block_order(seed=seed), "val": val.repartition(target_num_rows_per_block=rows)}


def block_rows(rows: int) -> int:
    """Rows per block for `rows` training rows: one block per preparation task the cluster runs
    at once (PREPARE_CPUS each), within [MIN_BLOCK_ROWS, MAX_BLOCK_ROWS]."""
    from facelab.formats.base import rows_per_block

    return rows_per_block(rows, MIN_BLOCK_ROWS, MAX_BLOCK_ROWS, per_cpu=1 / PREPARE_CPUS)


# --- prediction ------------------------------------------------------------------------------

class ImagePredictor:
    """Batch predictor of an image model folder: rows with `path` (batch jobs) or `image`
    (Serve); `outputs` maps a uint8 batch to averageable tensors, `finish` to output columns.
    With `tta_flip` in the model's config, outputs are averaged with the mirrored image's."""

    recipe: ClassVar[type[TorchRecipe]]

    def __init__(self, model_dir: str):
        self.config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
        self.model = load_model(self.recipe(), Path(model_dir))
        self.device = next(self.model.parameters()).device

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        raise NotImplementedError

    def finish(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return outputs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = input_images(batch, self.config, train=False)
        x = torch.from_numpy(stacked(images)).to(self.device)
        with torch.no_grad():
            out = self.outputs(x, images)
            if self.config["tta_flip"]:
                mirrored = self.outputs(torch.flip(x, dims=[3]), [i[:, ::-1] for i in images])
                out = {k: (v + mirrored[k]) / 2 for k, v in out.items()}
        result = self.finish({k: v.float().cpu().numpy() for k, v in out.items()})
        result.update({k: np.asarray(batch[k]) for k in KEEP_COLUMNS if k in batch})
        return result
