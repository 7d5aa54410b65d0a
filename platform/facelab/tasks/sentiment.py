"""AI Blitz XIII sentiment (seed 000, section 1): negative / neutral / positive from 512-d embeddings.

The seed's winner: SVC, polynomial kernel of degree 3, C=1, gamma "scale", l1-normalised inputs,
refitted as a 10-fold CV ensemble on train+val. Tune searches SVC and LightGBM with RandomForest
and KNN as baselines (tuning/spaces/sentiment.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facelab.answers import LabelProbabilities
from facelab import estimators, metrics, plots
from facelab.formats import Read
from facelab.formats.sentiment import DIM, LABELS
from facelab.task_config import EstimatorConfig, Kernel, Preprocess
from facelab.tasks.base import Task

Embedding = list[float]


class SentimentRequest(BaseModel):
    """One embedding, or a batch of them, of exactly 512 finite numbers each."""

    model_config = ConfigDict(extra="forbid")
    embedding: list[float] | None = Field(None, min_length=DIM, max_length=DIM)
    embeddings: list[list[float]] | None = Field(None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.embedding is None) == (self.embeddings is None):
            raise ValueError("give exactly one of 'embedding' or 'embeddings'")
        for vector in [self.embedding] if self.embedding is not None else self.embeddings:
            if len(vector) != DIM:
                raise ValueError(f"an embedding has {len(vector)} values, expected {DIM}")
            with np.errstate(over="ignore"):  # the predictor's float32: 1e308 would become infinity there
                if not np.isfinite(np.asarray(vector, np.float32)).all():
                    raise ValueError("embeddings must not contain NaN, infinity or values beyond float32's range")
        return self


def matrix(read: Read) -> tuple[np.ndarray, np.ndarray]:
    """A split as (X float32 [n, 512], y labels) for scikit-learn."""
    frame = read.dataset.to_pandas()
    return np.stack(frame["embedding"].to_numpy()).astype(np.float32), frame["label"].to_numpy()


class SentimentPredictor:
    """Batch predictor over `embedding` rows: label and per-class probabilities."""

    def __init__(self, model_dir: str):
        self.model = estimators.CVEnsemble.load(model_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.stack(list(batch["embedding"])).astype(np.float32)
        proba = self.model.predict_proba(x)
        out = {"label": self.model.classes_[proba.argmax(1)]}
        out.update({f"p_{c}": proba[:, i] for i, c in enumerate(self.model.classes_)})
        if "_row" in batch:
            out["_row"] = batch["_row"]
        return out


class SentimentConfig(EstimatorConfig):
    """The seed's winner: SVC (the base's default family), polynomial kernel of degree 3, C=1,
    gamma "scale", l1-normalised inputs."""

    kernel: Kernel = "poly"
    preprocess: Preprocess = "l1"
    cv_folds: int = Field(5, ge=2)
    """folds of the cross-validation that scores a config in a Tune trial"""
    ensemble_folds: int = Field(10, ge=2)
    """members of the final model: a k-fold CV ensemble fitted on train+val"""


class SentimentTask(Task):
    name = "sentiment"
    reference = "000 AI Blitz XIII, 1: sentiment classification"
    metric = "f1_weighted"
    mode = "max"
    converters = ("sentiment",)
    Config = SentimentConfig
    Request = SentimentRequest
    Answer = LabelProbabilities
    predictor_class = SentimentPredictor

    def trial_data(self, data: dict[str, Read]):
        xs, ys = zip(*(matrix(data[s]) for s in self.fit_splits))
        return np.concatenate(xs), np.concatenate(ys)

    def evaluate_config(self, config: dict, data) -> dict[str, float]:
        x, y = data
        return estimators.cross_validate(config, x, y, folds=int(config["cv_folds"]))

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        x, y = self.trial_data(data)
        ensemble, oof = estimators.fit_cv_ensemble(config, x, y, folds=int(config["ensemble_folds"]))
        ensemble.save(model_dir)
        (Path(model_dir) / "labels.json").write_text(json.dumps(list(LABELS)))
        plots.confusion_matrix_png(y, oof, LABELS, Path(model_dir) / "confusion_matrix.png",
                                   title="sentiment: out-of-fold predictions (train+val)")
        return {f"cv_{k}": v for k, v in metrics.classification(list(y), list(oof)).items()}

    def request_rows(self, request: SentimentRequest) -> tuple[list[dict], bool]:
        if request.embedding is not None:
            return [{"embedding": np.asarray(request.embedding, np.float32)}], False
        return [{"embedding": np.asarray(e, np.float32)} for e in request.embeddings], True

    def answer(self, output: dict) -> dict:
        return {"label": str(output["label"]), "probabilities": {c: float(output[f"p_{c}"]) for c in LABELS}}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        first = json.loads(pd.read_csv(Path(data) / "test.csv", nrows=1)["embeddings"][0])
        return {"embedding": first}, {"embedding": first[:100]}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["_row", "label"]]
