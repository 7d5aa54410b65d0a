"""What the YOLO tasks (mask, age-bins) share, on top of `facelab.yolo`.

Every fit is a Ray Tune trial (`facelab.yolo.trial.trial`): `facelab train` runs one, a sweep runs
many under ASHA through `run_trial`, and the promoted model is a trial's best checkpoint
(`fit_from_trial`), not a refit. The batch predictor takes image paths (batch jobs) or decoded
images (Serve), and both endpoints take one base64 image or a batch of them. ultralytics is only
imported when a fit or a predictor starts, so looking a task up stays cheap.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import ClassVar

import numpy as np

from facelab.formats import Read
from facelab.formats.images import load_rgb
from facelab.image_requests import ImageRequest, request_rows
from facelab.tasks.base import Task

class YoloPredictor:
    """Base of the YOLO batch predictors: one loaded model (GPU when visible) per instance."""

    def __init__(self, model_dir: str):
        from facelab.yolo.predict import load

        self.model = load(model_dir)

    @staticmethod
    def images(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        """RGB arrays of a batch: decoded uploads (`image`) or files (`path`)."""
        if "image" in batch:
            return list(batch["image"])
        return [load_rgb(path) for path in batch["path"]]

    @staticmethod
    def keys(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The columns that identify each row in the output."""
        return {k: batch[k] for k in ("_row", "image_id") if k in batch}


class ImageUploads:
    """The requests of the whole-image tasks (YOLO's and the mask's face method): `POST /<task>`
    with one image or a batch, and the demo's good and bad bodies."""

    Request = ImageRequest

    def request_rows(self, request: ImageRequest) -> tuple[list[dict], bool]:
        return request_rows(request)

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        """The first image of the data's test split (else val) as base64, and a non-image."""
        folder = next(Path(data) / s for s in ("test", "val", "train") if (Path(data) / s).is_dir())
        first = sorted(folder.glob("*.jpg"))[0]
        return ({"image": base64.b64encode(first.read_bytes()).decode("ascii")},
                {"image": base64.b64encode(b"this is not an image").decode("ascii")})


class YoloTask(ImageUploads, Task):
    kind: ClassVar[str]  # "detect" or "classify"
    reports_per_epoch = True
    predict_on_gpu: ClassVar[bool] = True  # batch jobs give each predictor actor a GPU when there is one

    def class_names(self, data: dict[str, Read]) -> tuple[str, ...]:
        raise NotImplementedError

    @staticmethod
    def scorer(*args) -> dict[str, float]:
        """The task's metrics of validation predictions (see facelab.yolo.layout.YoloData)."""
        raise NotImplementedError

    def trial_data(self, data: dict[str, Read]):
        from facelab.yolo.layout import YoloData

        return YoloData.from_reads(self.kind, data, self.class_names(data), type(self).scorer)

    def trial_resources(self, trials: int | None) -> dict[str, float]:
        """A YOLO trial reads its data itself and reserves whole CPUs or a GPU."""
        from facelab.yolo.trial import trial_resources

        return trial_resources()

    def run_trial(self, config: dict, trial_data, **options) -> None:
        """One ultralytics fit reporting the task's metric every epoch (for ASHA) with a
        checkpoint (for Tuner.restore)."""
        from facelab.yolo.trial import trial

        trial(config, trial_data)

    def tune_run_config(self, name: str, storage: str, **kwargs):
        from facelab.yolo.trial import run_config

        return run_config(name, storage, self.metric, self.mode, **kwargs)

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """One trial with `config`; its best epoch becomes the model folder."""
        from facelab.trial import trainable
        from facelab.yolo.trial import fit

        result = fit(config, trainable(self, self.trial_data(data), 1), metric=self.metric, mode=self.mode,
                     name=f"{self.name}-fit-{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
        return self.fit_from_trial(result, config, data, model_dir)

    def fit_from_trial(self, result, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """A finished trial's best checkpoint as the model folder, plus the task's own extras."""
        from facelab.yolo.export import export

        return export(result, model_dir, config, kind=self.kind, names=self.class_names(data),
                      metric=self.metric, mode=self.mode)
