"""MCS2019 video face recognition (seed 003): one descriptor per track of frame descriptors.

The task puts together the aggregator of `facelab.aggregator` (network, training, data
preparation, requests, predictor; see its package docstring for the seed's method and where
this departs from it) and reports the trained model against the mean baseline and the
untrained norm-weighted mean on the validation people.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel

from facelab import plots
from facelab.aggregator.data import TrackData, prepare_tracks, track_summaries
from facelab.aggregator.predictor import THRESHOLDS_FILE, TrackPredictor
from facelab.aggregator.requests import AggregateRequest, MatchRequest, TrackRequest
from facelab.aggregator.training import TrackRecipe
from facelab.formats import Read
from facelab.formats.tracks import norm_weighted_mean, split_pairs, track_frames
from facelab.tasks.prepared_torch import Prepared, PreparedTorchTask

METRIC = "val_tpr@fpr=1e-05"  # `val_` + the key metrics.tpr_at_fpr gives FPR 1e-5


class TracksTask(PreparedTorchTask):
    name = "tracks"
    seed = "003 MCS2019, 1st place: PCA-200 + softmax-code aggregator"
    metric = METRIC
    mode = "max"
    default_config: ClassVar[dict] = {
        "model": "aggregator", "pca_dim": 200, "code_size": 1000, "temperature": 1.0, "quality": "norm",
        "quality_power": "auto", "margin": 0.05, "centre": "auto", "neg_weight": 10.0, "lr": 1e-4, "weight_decay": 0.0,
        "lr_drop": 3.0, "lr_drop_epoch": 10, "epochs": 10, "batch_size": 64, "val_share": 0.2, "seed": 0,
    }
    demo_config: ClassVar[dict] = {"epochs": 3}
    fit_splits = ("train",)
    Request = TrackRequest
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

    def after_fit(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float]) -> dict:
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

    def response(self, outputs: list[dict], batched: bool) -> dict:
        shaped = [{"descriptor": np.asarray(o["descriptor"]).tolist()} for o in outputs]
        return {"predictions": shaped} if batched else shaped[0]

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        first = next(iter(track_frames(Path(data), "test").values()))
        return {"frames": first.tolist()}, {"frames": [first[0].tolist(), first[1][:10].tolist()]}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["track_id", "descriptor"]]


__all__ = ["TracksTask"]
