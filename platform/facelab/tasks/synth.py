"""HexaFace face synthesis (seed 002, sections 3.1, 4.5, 5.5): a DCGAN on UTKFace faces, 64x64.

The seed's DCGAN: a generator of strided transposed convolutions, batch norm and LeakyReLU from
a noise vector, a discriminator of strided convolutions, batch norm, LeakyReLU and dropout, the
two cross-entropy losses of the minimax game, two Adam optimizers, 190 epochs on CelebA; faces
of "decent quality", and more women than men among the samples of a GAN trained on more women.
Here the same DCGAN (Radford et al. sizes, N(0, 0.02) init, Adam(2e-4, beta1 0.5), one-sided
label smoothing) trains on UTKFace through the shared Ray Train mechanism, its two optimizers
stepped by `GanRecipe.train_step`. Each epoch's samples are scored against the held-out real
faces: `face_rate` (the fraction of fixed-noise samples in which dlib HOG finds a face; the
epoch kept) and `fd_pixels` (Frechet distance of 8x8 colour thumbnails, samples vs real).

`facelab.synth_measure` (also `facelab synth --measure` and `facelab score --task synth`) checks
samples the way the seed did: the HOG and mediapipe face rates of samples and of real faces at the
same size, and the share of women among samples by the promoted `age-gender` model's gender head
(handed in by the caller), next to its share among real held-out faces and the training set's
true share.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from facelab.formats import Read
from facelab.formats.synth import GRID_PNG, GRID_SAMPLES, grid
from facelab.synth_measure import face_rates
from facelab.task_config import TorchConfig
from facelab.tasks.torch_task import TorchTask
from facelab.torch_train import CONFIG_FILE, Optimizers, TorchRecipe, load_model
from facelab.uploads import Binary, encode_png
from facelab.vision import load_image, resized, stacked, training_datasets

THUMB = 8  # the side of the colour thumbnails that fd_pixels compares


class SynthRequest(BaseModel):
    """`n` faces from the noise of seeds `seed` .. `seed + n - 1` (the same seed, the same face)."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(16, ge=1, le=64, description="how many faces (a grid of 8 per row)")
    seed: int = Field(0, ge=0, le=2**31 - 64)


# --- the networks ---------------------------------------------------------------------------

def generator(nz: int, width: int):
    """noise [N, nz, 1, 1] -> image [N, 3, 64, 64] in -1..1: transposed convolutions 4->8->...->64."""
    nn = torch.nn
    layers, channels = [], nz
    for i, mult in enumerate((8, 4, 2, 1)):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(channels, width * mult, 4, stride, pad, bias=False), nn.BatchNorm2d(width * mult),
                   nn.LeakyReLU(0.2, inplace=True)]
        channels = width * mult
    return nn.Sequential(*layers, nn.ConvTranspose2d(channels, 3, 4, 2, 1, bias=False), nn.Tanh())


def discriminator(width: int, dropout: float):
    """image [N, 3, 64, 64] in -1..1 -> one real/fake logit each: strided convolutions 64->32->...->4->1."""
    nn = torch.nn
    layers, channels = [], 3
    for i, mult in enumerate((1, 2, 4, 8)):
        layers += [nn.Conv2d(channels, width * mult, 4, 2, 1, bias=False)]
        layers += [nn.BatchNorm2d(width * mult)] if i else []
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
        channels = width * mult
    return nn.Sequential(*layers, nn.Conv2d(channels, 1, 4, 1, 0, bias=False), nn.Flatten())


class DCGAN(torch.nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.nz = int(config["nz"])
        self.generator = generator(self.nz, int(config["g_width"]))
        self.discriminator = discriminator(int(config["d_width"]), float(config["d_dropout"]))
        for module in self.modules():  # DCGAN init
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, torch.nn.BatchNorm2d):
                torch.nn.init.normal_(module.weight, 1.0, 0.02)
                torch.nn.init.zeros_(module.bias)

    def forward(self, z, real=None):
        """One call per optimisation step, so DDP syncs each step's gradients: with `real`
        (uint8 NCHW) the discriminator's logits on real and on generated faces (its step),
        without it, its logits on generated faces (the generator's step)."""
        fake = self.generator(z)
        if real is None:
            return self.discriminator(fake)
        # not detached: the generator takes part in every forward (DDP needs no unused parameters);
        # its gradients from this step are cleared before its own step
        return self.discriminator(real.float() / 127.5 - 1.0), self.discriminator(fake)


def latents(seeds, counts, nz: int) -> torch.Tensor:
    """The noise of faces seed .. seed + count - 1 for every (seed, count): one fixed vector per seed."""
    vectors = [torch.randn(1, nz, 1, 1, generator=torch.Generator().manual_seed(int(seed) + i))
               for seed, count in zip(seeds, counts) for i in range(int(count))]
    return torch.cat(vectors)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output (-1..1 NCHW) as uint8 NHWC."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def generate(model: DCGAN, z: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """uint8 NHWC faces for the noise `z` (eval mode, in chunks)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return np.concatenate([to_uint8(model.generator(part.to(device))) for part in z.split(chunk)])


# --- measuring faces ------------------------------------------------------------------------

def thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 NCHW (or NHWC) -> float64 [N, 3 * THUMB * THUMB] of area-averaged colour in 0..1."""
    x = torch.as_tensor(images)
    if x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    return torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, THUMB).flatten(1).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows are samples)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))


# --- training -------------------------------------------------------------------------------

class GanRecipe(TorchRecipe):
    """UTKFace crops resized to 64x64 (mirrored at random) in Ray Data; one discriminator and one
    generator Adam step per batch; fixed-noise samples scored against the held-out faces."""

    def build_model(self, config: dict):
        return DCGAN(config)

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        size = int(config["image_size"])
        images = [resized(load_image(p), size) for p in batch["path"]]
        if train:
            rng = np.random.default_rng()
            images = [image[:, ::-1] if rng.random() < 0.5 else image for image in images]
        return {"image": stacked(images)}

    def optimizer(self, model, config: dict):
        betas = (float(config["beta1"]), 0.999)
        return Optimizers({
            "generator": torch.optim.Adam(model.generator.parameters(), lr=float(config["lr"]), betas=betas),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=float(config["d_lr"]), betas=betas)})

    def train_step(self, model, batch: dict, optimizer: Optimizers, config: dict) -> dict[str, float]:
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        real = batch["image"]
        nz = int(config["nz"])

        def noise():
            return torch.randn(len(real), nz, 1, 1, device=real.device)

        optimizer.zero_grad()
        on_real, on_fake = model(noise(), real)
        # one-sided label smoothing: real faces are labelled 1 - smoothing
        d_loss = bce(on_real, torch.full_like(on_real, 1.0 - float(config["label_smoothing"]))) + \
            bce(on_fake, torch.zeros_like(on_fake))
        d_loss.backward()
        optimizer["discriminator"].step()
        optimizer.zero_grad()
        fooled = model(noise())
        g_loss = bce(fooled, torch.ones_like(fooled))
        g_loss.backward()
        optimizer["generator"].step()
        return {"train_loss": float(g_loss.detach()), "d_loss": float(d_loss.detach()),
                "d_real": float(on_real.detach().sigmoid().mean()), "d_fake": float(on_fake.detach().sigmoid().mean())}

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        real = np.concatenate([thumbnails(b["image"].cpu()) for b in batches])
        faces = generate(model, latents([int(config["eval_seed"])], [int(config["eval_samples"])], int(config["nz"])))
        rate = face_rates(list(faces[:int(config["eval_faces"])]), ("hog",))["hog"]
        return {"face_rate": rate, "fd_pixels": frechet_distance(thumbnails(faces), real)}


RECIPE = GanRecipe()


# --- prediction -----------------------------------------------------------------------------

class SynthPredictor:
    """Rows of `seed` (and `n`, default 1) -> `png`: the face of that seed, or a grid of the n
    faces of seeds seed .. seed + n - 1."""

    def __init__(self, model_dir: str):
        self.config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
        self.model = load_model(RECIPE, Path(model_dir))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seeds = np.asarray(batch["seed"], np.int64)
        counts = np.asarray(batch.get("n", np.ones(len(seeds))), np.int64)
        faces = generate(self.model, latents(seeds, counts, int(self.config["nz"])))
        pngs, start = np.empty(len(seeds), dtype=object), 0
        for i, count in enumerate(counts):
            part = faces[start:start + count]
            pngs[i] = encode_png(part[0] if count == 1 else grid(list(part)))
            start += count
        out = {"png": pngs, "seed": seeds}
        if "_row" in batch:
            out["_row"] = batch["_row"]
        return out


class SynthConfig(TorchConfig):
    """The full (GPU) run: ~6k UTKFace faces, 150 epochs of 46 steps (about 7k steps at batch 128)."""

    epochs: int = 150
    batch_size: int = 128
    eval_batch_size: int | None = 256
    image_size: Literal[64] = 64
    """side of the faces in pixels (the DCGAN makes 64x64 images)"""
    nz: int = Field(100, ge=1)
    """length of the generator's noise vector"""
    g_width: int = Field(64, ge=1)
    """channels of the generator's last layer (8, 4 and 2 times as many before it)"""
    d_width: int = Field(64, ge=1)
    """channels of the discriminator's first layer (2, 4 and 8 times as many after it)"""
    d_dropout: float = Field(0.3, ge=0, lt=1)
    """dropout after each discriminator layer"""
    lr: float = 2e-4
    """the generator's Adam learning rate"""
    d_lr: float = Field(2e-4, gt=0)
    """the discriminator's Adam learning rate"""
    beta1: float = Field(0.5, ge=0, lt=1)
    """Adam's beta1, both optimizers"""
    weight_decay: float = 0.0
    """unused: the DCGAN's Adam optimizers have no weight decay"""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """one-sided: the discriminator's target for real faces is 1 minus this"""
    eval_seed: int = Field(10**6, ge=0)
    """seed of the fixed noise whose samples are scored every epoch"""
    eval_samples: int = Field(512, ge=2)
    """fixed-noise samples compared with the held-out faces every epoch (fd_pixels)"""
    eval_faces: int = Field(128, ge=1)
    """of those, how many dlib HOG looks for a face in (face_rate)"""


class SynthTask(TorchTask):
    name = "synth"
    reference = "002 HexaFace, 3.1/4.5/5.5: DCGAN face synthesis and its gender balance"
    metric = "face_rate"
    mode = "max"
    Config = SynthConfig
    # what `facelab demo` and CPU smoke runs override
    demo_config: ClassVar[dict] = {"epochs": 2, "g_width": 8, "d_width": 8, "batch_size": 32, "eval_samples": 256,
                                   "eval_faces": 16}
    Request = SynthRequest
    predictor_class = SynthPredictor
    predict_on_gpu = True
    recipe = RECIPE

    def trial_data(self, data: dict[str, Read]) -> dict:
        return training_datasets(data["train"].dataset, data["val"].dataset)

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame | None) -> dict[str, float]:
        """A grid of the kept generator's first 64 faces, and the training faces' share of women."""
        faces = SynthPredictor(str(model_dir))({"seed": np.array([0]), "n": np.array([GRID_SAMPLES])})
        (Path(model_dir) / GRID_PNG).write_bytes(faces["png"][0])
        genders = data["train"].dataset.select_columns(["gender"]).to_pandas()["gender"]
        return {**metrics, "train_faces": float(len(genders)), "female_share_train_labels": float((genders == 1).mean())}

    def request_rows(self, request: SynthRequest) -> tuple[list[dict], bool]:
        return [{"seed": request.seed, "n": request.n}], False

    def response(self, outputs: list[dict], batched: bool) -> Binary:
        return Binary("image/png", bytes(outputs[0]["png"]))

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        return {"n": 8, "seed": 1}, {"n": 0}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "seed", "png"]]
