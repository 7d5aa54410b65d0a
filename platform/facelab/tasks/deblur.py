"""AI Blitz XIII face de-blurring (seed 000, section 5): a sharp face from a blurred one.

The seed's model is SRCNN 9-1-5 (conv 9x9 -> 64, ReLU, conv 1x1 -> 32, ReLU, conv 5x5 -> 3),
trained with MSE + L1 + (1 - MS-SSIM), AdamW (lr 1e-3) and ReduceLROnPlateau (patience 4,
factor 0.5). Deviations, all configurable: the convolutions are padded to keep the size
("same" padding: 4, 0, 2; the seed's notebook pads 2, 2, 2, which shrinks then regrows the
map); training runs on random `crop`-pixel crops (with horizontal flips) so an epoch fits a
CPU, validation and test on whole images; `residual: true` adds the input to the output (the
network then learns the missing detail only). The tunable alternative (`arch: resnet`) is a
residual network: 3x3 conv to `channels`, `blocks` residual blocks (conv-ReLU-conv + skip),
3x3 conv to RGB, plus the input. `arch: multiscale` is a small residual U-Net: the same blocks at
full, half and quarter resolution (`channels`, 2x and 4x as many maps; `scale_blocks` blocks at each
stage), joined by skip connections, plus the input: its receptive field (about 90 pixels) covers
the strong blur's 21-pixel motion streaks that the full-resolution networks see only in part.

MS-SSIM (pytorch_msssim: 5 scales, with the ReLU on each scale's terms that the seed added
against NaNs) needs the image's smaller side to exceed (win_size - 1) * 16: 160 pixels for the
standard 11-pixel window. On smaller images the window shrinks to the largest odd size that
fits (5 for 96-pixel crops, 3 down to 33 pixels); below that the loss uses single-scale SSIM.

Metrics (validation every epoch, and `facelab score` on a submission): mean SSIM then PSNR of
restored vs original uint8 images as the challenge scores them (facelab.metrics.image_quality),
next to the same numbers for the blurred inputs themselves, the do-nothing baseline
(`val_blur_ssim`, `val_blur_psnr`). The model folder also holds `samples.png`: blurred /
restored / original of a few validation faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from pytorch_msssim import ms_ssim, ssim
from torch import nn

from facelab import metrics, plots
from facelab.formats import Read
from facelab.formats.images import load_rgb
from facelab.task_config import TorchConfig
from facelab.tasks.torch_task import TorchTask
from facelab.torch_train import TorchRecipe, load_model
from facelab.uploads import Binary, ImageB64, decode_image, encode_png

ARCHS = ("srcnn", "resnet", "multiscale")
MS_SSIM_DOWNSAMPLINGS = 4  # 5 scales
SAMPLE_FACES = 4


# --- models ---------------------------------------------------------------------------------

class SRCNN(nn.Module):
    """The seed's 9-1-5 network, size-preserving; `residual` adds the input to the output."""

    def __init__(self, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(nn.Conv2d(3, 64, 9, padding=4), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, 32, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(32, 3, 5, padding=2))

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class ResidualDeblur(nn.Module):
    """The stronger alternative: `blocks` residual blocks of `channels` maps, plus the input."""

    def __init__(self, channels: int = 32, blocks: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  *[ResidualBlock(channels) for _ in range(blocks)], nn.Conv2d(channels, 3, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class MultiScaleDeblur(nn.Module):
    """A residual U-Net (see the module docstring); any image size (padded to a multiple of 4)."""

    def __init__(self, channels: int = 16, blocks: int = 2):
        super().__init__()

        def stage(width: int, *first: nn.Module) -> nn.Sequential:
            return nn.Sequential(*first, *[ResidualBlock(width) for _ in range(blocks)])

        c = channels
        self.encode = nn.ModuleList([
            stage(c, nn.Conv2d(3, c, 3, padding=1), nn.ReLU(inplace=True)),
            stage(2 * c, nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(inplace=True)),
            stage(4 * c, nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.ReLU(inplace=True))])
        self.up = nn.ModuleList([nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2), nn.ConvTranspose2d(2 * c, c, 2, stride=2)])
        self.decode = nn.ModuleList([stage(2 * c), stage(c)])
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        height, width = x.shape[-2:]
        padded = F.pad(x, (0, -width % 4, 0, -height % 4), mode="replicate")
        full = self.encode[0](padded)
        half = self.encode[1](full)
        features = self.encode[2](half)
        for up, decode, skip in zip(self.up, self.decode, (half, full)):
            features = decode(up(features) + skip)
        return x + self.tail(features)[..., :height, :width]


def build_network(config: dict) -> nn.Module:
    """SRCNN 9-1-5 (`arch: srcnn`), the residual network (`arch: resnet`) or the residual U-Net
    (`arch: multiscale`)."""
    arch = config["arch"]
    if arch not in ARCHS:
        raise ValueError(f"config 'arch' is '{arch}'; expected one of {', '.join(ARCHS)}")
    if arch == "srcnn":
        return SRCNN(bool(config["residual"]))
    if arch == "multiscale":
        return MultiScaleDeblur(int(config["channels"]), int(config["scale_blocks"]))
    return ResidualDeblur(int(config["channels"]), int(config["blocks"]))


def ssim_loss(pred, target):
    """1 - MS-SSIM, with the largest window the image size allows (see the module docstring)."""
    side = min(pred.shape[-2:])
    window = 11
    while window >= 3 and (window - 1) * 2 ** MS_SSIM_DOWNSAMPLINGS >= side:
        window -= 2
    if window >= 3:
        return 1 - ms_ssim(pred, target, data_range=1.0, win_size=window)
    return 1 - ssim(pred, target, data_range=1.0, win_size=min(11, side - (1 - side % 2)))


def restoration_loss(pred, target):
    """The seed's loss: MSE + L1 + (1 - MS-SSIM), on images in [0, 1]."""
    return F.mse_loss(pred, target) + F.l1_loss(pred, target) + ssim_loss(pred, target)


# --- images <-> tensors -----------------------------------------------------------------------

def to_planes(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x 3 x H x W float32 in [0, 1]."""
    return np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2) / 255.0)


def to_images(planes) -> np.ndarray:
    """N x 3 x H x W tensor in [0, 1] -> N x H x W x 3 uint8 (rounded, clipped)."""
    array = planes.detach().float().clamp(0, 1).cpu().numpy()
    return np.rint(array.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)


def _crop_pair(blur: np.ndarray, original: np.ndarray, size: int, rng: np.random.Generator | None):
    """The same window of both images: random (train) or central (rng None); whole when smaller."""
    h, w = blur.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top = int(rng.integers(0, h - ch + 1)) if rng is not None else (h - ch) // 2
    left = int(rng.integers(0, w - cw + 1)) if rng is not None else (w - cw) // 2
    window = (slice(top, top + ch), slice(left, left + cw))
    return blur[window], original[window]


def restore(model, images, dev) -> list[np.ndarray]:
    """Restore RGB uint8 images one by one (their sizes may differ)."""
    out = []
    with torch.no_grad():
        for image in images:
            planes = torch.from_numpy(to_planes(np.asarray(image)[None])).to(dev)
            out.append(to_images(model(planes))[0])
    return out


class DeblurRecipe(TorchRecipe):
    def build_model(self, config: dict):
        return build_network(config)

    def prepare(self, batch: dict[str, np.ndarray], config: dict, train: bool) -> dict[str, np.ndarray]:
        """Load each pair; train: a random `crop` window, flipped half the time; validation:
        whole images (centre-cropped to the batch's smallest size if sizes differ)."""
        blurs = [load_rgb(p) for p in batch["blur_path"]]
        originals = [load_rgb(p) for p in batch["original_path"]]
        if train:
            rng = np.random.default_rng()
            pairs = [_crop_pair(b, o, int(config["crop"]), rng) for b, o in zip(blurs, originals)]
            pairs = [(b[:, ::-1], o[:, ::-1]) if rng.random() < 0.5 else (b, o) for b, o in pairs]
        else:
            side = min(min(b.shape[:2]) for b in blurs)
            same = len({b.shape for b in blurs}) == 1
            pairs = list(zip(blurs, originals)) if same else [_crop_pair(b, o, side, None) for b, o in zip(blurs, originals)]
        return {"blur": to_planes(np.stack([b for b, _ in pairs])), "original": to_planes(np.stack([o for _, o in pairs]))}

    def loss(self, model, batch, config: dict):
        return restoration_loss(model(batch["blur"]), batch["original"])

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        restored, blurred, originals = [], [], []
        for batch in batches:
            restored += list(to_images(model(batch["blur"])))
            blurred += list(to_images(batch["blur"]))
            originals += list(to_images(batch["original"]))
        return {f"val_{k}": v for k, v in metrics.restoration(restored, blurred, originals).items()}

    def scheduler(self, optimizer, config: dict):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=float(config["factor"]),
                                                          patience=int(config["patience"]))


# --- batch predictor and serving --------------------------------------------------------------

class DeblurPredictor:
    """Batch predictor: `blur_path` rows (submissions) or decoded `image` rows (serving) ->
    the restored `image` (HxWx3 uint8), with `name` and `_row` passed through."""

    def __init__(self, model_dir: str):
        from facelab.torch_train import device

        self.device = device()
        self.model = load_model(DeblurRecipe(), Path(model_dir))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = batch["image"] if "image" in batch else [load_rgb(p) for p in batch["blur_path"]]
        restored = restore(self.model, images, self.device)
        column = np.empty(len(restored), dtype=object)
        column[:] = restored
        out = {"image": np.stack(restored) if len({r.shape for r in restored}) == 1 else column}
        out.update({k: batch[k] for k in ("name", "_row") if k in batch})
        return out


class DeblurRequest(BaseModel):
    """One blurred image (a multipart file or base64 text); the answer is the restored PNG."""

    model_config = ConfigDict(extra="forbid")
    image: ImageB64


class DeblurConfig(TorchConfig):
    """The seed's SRCNN 9-1-5 with its optimizer settings (AdamW, lr 1e-3, plateau patience 4, factor 0.5)."""

    arch: Literal["srcnn", "resnet", "multiscale"] = "srcnn"
    """SRCNN 9-1-5 (the seed's), the residual network, or the multi-scale residual U-Net"""
    residual: bool = False
    """srcnn: add the input to the output (the network learns the missing detail only)"""
    channels: int = Field(32, ge=1)
    """resnet: channels of the residual blocks; multiscale: of its full-resolution stages"""
    blocks: int = Field(6, ge=1)
    """resnet: residual blocks"""
    scale_blocks: int = Field(2, ge=1)
    """multiscale: residual blocks in each of its five stages (three down, two up)"""
    epochs: int = 20
    batch_size: int = 8
    eval_batch_size: int | None = 16
    crop: int = Field(96, ge=8)
    """side in pixels of the random training crops (validation and test use whole images)"""
    weight_decay: float = 1e-4
    patience: int = Field(4, ge=0)
    """epochs without a better validation SSIM before the learning rate is cut"""
    factor: float = Field(0.5, gt=0, lt=1)
    """the learning rate is multiplied by this on a plateau"""


class DeblurTask(TorchTask):
    name = "deblur"
    reference = "000 AI Blitz XIII, 5: face de-blurring"
    metric = "val_ssim"
    mode = "max"
    converters = ("deblur",)
    Config = DeblurConfig
    demo_config: ClassVar[dict] = {"arch": "resnet", "channels": 16, "blocks": 2, "epochs": 2, "batch_size": 4,
                                   "crop": 64, "lr": 2e-3}
    recipe = DeblurRecipe()
    Request = DeblurRequest
    predictor_class = DeblurPredictor

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics_: dict[str, float],
               predictions: pd.DataFrame | None) -> dict[str, float]:
        """samples.png: blurred / restored / original of a few validation faces."""
        rows = data[self.fit_splits[1]].dataset.limit(SAMPLE_FACES).to_pandas()
        model = load_model(self.recipe, model_dir, "cpu")
        blurred = [load_rgb(p) for p in rows["blur_path"]]
        originals = [load_rgb(p) for p in rows["original_path"]]
        restored = restore(model, blurred, "cpu")
        captions = [[_caption(b, o), _caption(r, o), ""] for b, r, o in zip(blurred, restored, originals)]
        plots.image_rows_png(list(zip(blurred, restored, originals)), ["blurred", "restored", "original"],
                             model_dir / "samples.png", captions=captions, title=f"deblur ({config['arch']})")
        return metrics_

    def request_rows(self, request: DeblurRequest) -> tuple[list[dict], bool]:
        return [{"image": decode_image(request.image, field="image")}], False

    def response(self, outputs: list[dict], batched: bool) -> Binary:
        return Binary("image/png", encode_png(outputs[0]["image"]))

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        import base64

        first = min((Path(data) / "test" / "blur").glob("*.jpg"))
        return ({"image": base64.b64encode(first.read_bytes()).decode("ascii")},
                {"image": base64.b64encode(b"not an image").decode("ascii")})

    def predictions_frame(self, predictions):
        return predictions[["name", "image"]]


def _caption(image: np.ndarray, original: np.ndarray) -> str:
    score = metrics.image_quality(image, original)
    return f"SSIM {score['ssim']:.3f}  PSNR {score['psnr']:.1f}"
