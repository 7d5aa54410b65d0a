"""MCS2019 video face recognition (seed 003): one descriptor per track of frame descriptors.

The task puts together the aggregator of `facelab.aggregator` (network, training, data
preparation, requests, predictor; see its package docstring for the seed's method and where
this departs from it) and reports the trained model against the mean baseline and the
untrained norm-weighted mean on the validation people.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from facelab import plots
from facelab.aggregator.data import TrackData, prepare_tracks, track_summaries
from facelab.aggregator.predictor import THRESHOLDS_FILE, TrackPredictor
from facelab.aggregator.requests import AggregateRequest, MatchRequest, TrackRequest
from facelab.aggregator.training import TrackRecipe
from facelab.answers import DescriptorAnswer
from facelab.formats import Read
from facelab.formats.tracks import norm_weighted_mean, split_pairs, track_frames
from facelab.task_config import TorchConfig
from facelab.tasks.prepared_torch import Prepared, PreparedTorchTask

METRIC = "val_tpr@fpr=1e-05"  # `val_` + the key metrics.tpr_at_fpr gives FPR 1e-5


class TracksConfig(TorchConfig):
    """The seed's aggregator: PCA-200, a softmax code of 1000, frames weighted by descriptor norm."""

    model: Literal["aggregator"] = "aggregator"
    """the network: the seed's PCA + softmax-code aggregator (facelab.aggregator)"""
    pca_dim: int = Field(200, ge=1)
    """principal components the unit frame descriptors are projected on"""
    code_size: int = Field(1000, ge=1)
    """length of each frame's softmax code (the encoder's prototypes)"""
    temperature: float = Field(1.0, gt=0)
    """softmax temperature of the codes"""
    quality: Literal["norm", "none"] = "norm"
    """frame weights: the descriptor norm to a learned power, or all equal"""
    quality_power: Literal["auto"] | float = "auto"
    """norm: the power's starting value (auto: the best of a few on the training tracks)"""
    margin: float = Field(0.05, ge=0, lt=1)
    """the contrastive loss's margins are centre x (1 -/+ margin)"""
    centre: Literal["auto"] | float = "auto"
    """distance the margins are centred on (auto: measured on the training tracks)"""
    neg_weight: float = Field(10.0, ge=0)
    """weight of the other-person pairs' term of the loss"""
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_drop: float = Field(3.0, ge=1)
    """the learning rate is divided by this every lr_drop_epoch epochs"""
    lr_drop_epoch: int = Field(10, ge=1)
    """epochs between learning-rate drops"""
    epochs: int = 10
    batch_size: int = 64
    val_share: float = Field(0.2, gt=0, lt=1)
    """share of the training people held out for validation"""
    seed: int = 0
    """seed of the people split, the PCA sample and the encoder's prototypes"""


class TracksTask(PreparedTorchTask):
    name = "tracks"
    reference = "003 MCS2019, 1st place: PCA-200 + softmax-code aggregator"
    metric = METRIC
    mode = "max"
    converters = ("tracks",)
    Config = TracksConfig
    demo_config: ClassVar[dict] = {"epochs": 3}
    fit_splits = ("train",)
    Request = TrackRequest
    Answer = DescriptorAnswer
    predictor_class = TrackPredictor
    actions: ClassVar[dict[str, type[BaseModel]]] = {"aggregate": AggregateRequest, "match": MatchRequest}

    def read_for_fit(self, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
        """The training tracks and the training references (as a small Dataset)."""
        import ray

        reads = super().read_for_fit(data, skip_bad=skip_bad)
        people, refs = self.format.references(Path(data), "train")
        frame = pd.DataFrame({"person_id": people, "descriptor": list(refs)})
        reads["references"] = Read(ray.data.from_pandas(frame), [])
        return reads

    def prepare_data(self, data: dict[str, Read], config: dict) -> Prepared:
        return Prepared(*prepare_tracks(data, config))

    def trainer_inputs(self, config: dict, state: TrackData) -> tuple[TrackRecipe, dict]:
        return TrackRecipe(state), state.config(config)

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame | None) -> dict:
        """The trained model against the mean baseline and the untrained norm-weighted mean (at
        the config's power) on the validation people: scores, the ROC of all three, and the
        distance threshold at FPR 1e-4 that `match` uses."""
        from facelab.predict import predict_dataset

        prepared = self.trial_data(data)
        state, val_tracks = prepared.state, prepared.datasets["val"]
        frames = val_tracks.to_pandas().sort_values("_row")
        val = track_summaries(frames)
        aggregated = np.stack(predict_dataset(self, model_dir, val_tracks, actors=1).descriptor)
        people = val.person_id.map(state.person_index).to_numpy()
        trained = json.loads((model_dir / "config.json").read_text())
        power = float(trained["quality_power"]) if trained.get("quality") == "norm" else 0.0
        weighted = np.stack([norm_weighted_mean(f, power) for f in frames.frames])
        curves = {name: split_pairs(vectors, people, state.val_references, state.val_reference_people)
                  for name, vectors in (("aggregator", aggregated), ("mean baseline", np.stack(val.baseline)),
                                        (f"norm-weighted mean (power {power:g})", weighted))}
        plots.roc_png(curves, model_dir / "val_roc.png", title="tracks: validation people")
        negative = np.sort(curves["aggregator"][1])
        threshold = float(negative[int(np.floor(1e-4 * len(negative)))] - 1e-6)
        (model_dir / THRESHOLDS_FILE).write_text(json.dumps({"fpr": 1e-4, "distance": threshold}))
        derived = state.derived
        return {**metrics, **state.baseline, **state.val_scores(aggregated, people, "val_"),
                **state.val_scores(weighted, people, "val_weighted_mean_"),
                "val_people": float(derived["val_people"]), "train_people": float(derived["train_people"]),
                "auto_centre": float(derived["centre"]), "auto_quality_power": float(derived["quality_power"])}

    def request_rows(self, request: TrackRequest) -> tuple[list[dict], bool]:
        if request.frames is not None:
            return [{"frames": np.asarray(request.frames, np.float32)}], False
        return [{"frames": np.asarray(t, np.float32)} for t in request.tracks], True

    def answer(self, output: dict) -> dict:
        return {"descriptor": np.asarray(output["descriptor"]).tolist()}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        first = next(iter(track_frames(Path(data), "test").values()))
        return {"frames": first.tolist()}, {"frames": [first[0].tolist(), first[1][:10].tolist()]}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["track_id", "descriptor"]]


__all__ = ["TracksTask"]
