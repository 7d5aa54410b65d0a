"""The one tiny fit of each task that the whole suite shares (issue 18: one trained model per task).

`task_fit(name)` (tests/model/conftest.py) runs it once per session the way a user would, from a
working directory of its own with relative paths only: `facelab tune --samples 1` of the case's
config on the case's data. The contract test checks that lifecycle for every task; the task's own
test file checks the quality of the same stored run instead of training another.

A case is the data a working model must learn something from (an easy signal, so a broken model
fails the task's quality tests) and a CI-sized config. A task without a case fits its demo data
with its demo config, as `facelab demo` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facelab.formats import get_format


@dataclass(frozen=True)
class Case:
    data: Callable[[Path], Path]  # writes the data set into the folder it is given, returns it
    config: dict = field(default_factory=dict)


# --- age-gender: the background's brightness tells the age, the shade of a bar at each side the
# gender (two, so a random crop never cuts the signal off), a square's colour the race
AGE_GENDER_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def age_gender_image(rng: np.random.Generator, age: int, gender: int, race: int) -> Image.Image:
    level = np.full((64, 64, 1), 30 + 2 * age, np.int16) + rng.integers(-6, 7, (64, 64, 1))
    pixels = np.repeat(np.clip(level, 0, 255), 3, axis=2).astype(np.uint8)
    pixels[12:52, 12:52] = AGE_GENDER_COLOURS[race]
    pixels[:, :12] = pixels[:, -12:] = 0 if gender else 255
    return Image.fromarray(pixels)


def age_gender_data(root: Path, n: int = 400, seed: int = 0) -> Path:
    """The UTKFace layout with the easy signal above."""
    from facelab.formats.utkface import split_names

    rng = np.random.default_rng(seed)
    rows = []
    (root / "images").mkdir(parents=True)
    for i in range(n):
        age, gender, race = int(rng.integers(1, 100)), int(rng.integers(2)), int(rng.choice(5, p=[.4, .15, .15, .15, .15]))
        file = f"images/{age}_{gender}_{race}_{20170101000000000 + i}.jpg.chip.jpg"
        age_gender_image(rng, age, gender, race).save(root / file, quality=95)
        rows.append({"file": file, "age": age, "gender": gender, "race": race})
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "labels.csv", index=False)
    frame[split_names(frame["file"].tolist()) == "test"].to_csv(root / "test_truth.csv", index=False)  # as synthesize writes it
    return root


# --- occlusion: a bright picture whose top 2 x fraction is covered by a dark band
def occlusion_image(rng: np.random.Generator, fraction: float, grey: bool) -> Image.Image:
    colour = rng.integers(140, 255, 3)
    pixels = np.empty((64, 64, 3), np.uint8)
    pixels[:] = colour.mean() if grey else colour
    pixels[: int(round(2 * fraction * 64))] = rng.integers(0, 40)
    return Image.fromarray(pixels)


def occlusion_data(root: Path, n_train: int = 320, n_test: int = 60, seed: int = 0) -> Path:
    """The challenge layout with the easy target; a third of the images grey (database2/), so the
    grey model of the ensemble has enough to learn from."""
    from facelab.formats.occlusion import FILES, IMAGES

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            fraction, grey = float(rng.uniform(0, 0.5)), i % 3 == 0
            name = f"database{2 if grey else 1}/{split}{i:05d}.jpg"
            (root / IMAGES / name).parent.mkdir(parents=True, exist_ok=True)
            occlusion_image(rng, fraction, grey).save(root / IMAGES / name, quality=95)
            rows.append({"filename": name, "FaceOcclusion": round(fraction, 6), "gender": float(rng.random() < 0.6)})
        frame = pd.DataFrame(rows)
        if split == "train":
            frame.to_csv(root / FILES["train"], sep=" ", index=False)
        else:
            frame[["filename"]].to_csv(root / FILES["test"], sep=" ", index=False)
            frame.to_csv(root / "test_truth.csv", sep=" ", index=False)
    return root


# --- age-bins: the Blitz layout whose three bins differ in colour (a working classifier scores near 1)
AGE_BIN_HUES = {"10-20": (200, 40, 40), "50-60": (40, 200, 40), "80-90": (40, 40, 200)}


def _age_bins_split(root: Path, split: str, per_bin: int, rng: np.random.Generator) -> pd.DataFrame:
    from facelab.formats.images import random_ids, save_jpeg

    rows = []
    labels = [b for b in AGE_BIN_HUES for _ in range(per_bin)]
    for image_id, label in zip(random_ids(rng, per_bin * len(AGE_BIN_HUES)), labels):
        noise = rng.normal(0, 25, (64, 64, 3))
        save_jpeg(np.clip(np.array(AGE_BIN_HUES[label]) + noise, 0, 255).astype(np.uint8), root / split / f"{image_id}.jpg")
        rows.append((image_id, label))
    return pd.DataFrame(rows, columns=["ImageID", "age"])


def age_bins_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, per_bin in (("train", 24), ("val", 6)):
        _age_bins_split(root, split, per_bin, rng).to_csv(root / f"{split}.csv", index=False)
    test = _age_bins_split(root, "test", 6, rng)
    test.to_csv(root / "test_truth.csv", index=False)
    test.assign(age="").to_csv(root / "sample_submission.csv", index=False)
    return root


def synthetic(task: str, **options) -> Callable[[Path], Path]:
    """The task format's own synthetic set with these options."""
    return lambda root: get_format(task).synthesize(root, **options)


EMOTION_EASY = ("happy", "sad", "surprise")  # the most distinct cartoon expressions


def _age_bins_config() -> dict:
    from facelab.tasks.age_bins import SEED_CROP

    return {"model": "yolov8n", "imgsz": 32, "epochs": 5, "batch": 16, "lr0": 0.002, "lrf": 1.0, "warmup_epochs": 0,
            "auto_augment": None, "erasing": 0.0, "plots": False, "merge_val": True, "crop_double": SEED_CROP}


def cases() -> dict[str, Case]:
    from facelab.tasks import get_task

    return {
        # CI-sized: each epoch costs a Ray Data pass and a checkpoint more than its compute, so few
        # epochs over more (cheap, 32-pixel) images
        "age-gender": Case(age_gender_data, {"epochs": 4, "image_size": 32, "width": 8, "batch_size": 8,
                                             "race_weight": 1.0, "lr": 3e-3, "warmup_epochs": 0, "aug_colour": 0.0,
                                             "aug_grey": 0.0}),
        "occlusion": Case(occlusion_data, {"epochs": 4, "image_size": 32, "width": 8, "batch_size": 16, "lr": 3e-3,
                                           "warmup_epochs": 0}),
        "age-bins": Case(age_bins_data, _age_bins_config()),
        "emotion": Case(synthetic("emotion", n=300, seed=3, emotions=EMOTION_EASY),
                        {**get_task("emotion").demo_config, "epochs": 8}),
        "fairface": Case(synthetic("fairface", n=1200, seed=4), {"epochs": 10, "width": 128, "baseline_rounds": 40}),
        "mask-face": Case(synthetic("mask", n=120, seed=3), {"epochs": 5, "image_size": 48, "width": 8, "batch_size": 16,
                                                              "lr": 3e-3, "aug_box": 0.05}),
        "synth": Case(synthetic("synth", n=300, seed=2), {**get_task("synth").demo_config, "epochs": 10, "g_width": 16,
                                                         "d_width": 16, "lr": 1e-3, "d_lr": 1e-3, "batch_size": 16}),
        # quality_power fixed: the space draws numbers, the test checks the "auto" power it derives
        "tracks": Case(synthetic("tracks", n=40, seed=3), {"epochs": 2, "quality_power": "auto"}),
    }
