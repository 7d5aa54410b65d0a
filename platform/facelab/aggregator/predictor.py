"""A trained aggregator's model folder as a batch predictor (`frames` -> `descriptor`), and
the answers of `/tracks/aggregate` and `/tracks/match` (with the distance threshold at FPR 1e-4
that the fit stored beside the model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facelab import metrics
from facelab.aggregator.network import load_torch, pad_tracks
from facelab.aggregator.requests import AggregateRequest, MatchRequest
from facelab.aggregator.training import TrackRecipe
from facelab.errors import FacelabError
from facelab.torch_train import load_model

THRESHOLDS_FILE = "thresholds.json"


class TrackPredictor:
    """Batch predictor: `frames` (one array per track) -> `descriptor` (unit, one per track)."""

    def __init__(self, model_dir: str):
        self.model = load_model(TrackRecipe(), Path(model_dir))
        self.config = json.loads((Path(model_dir) / "config.json").read_text())
        thresholds = Path(model_dir) / THRESHOLDS_FILE
        self.threshold = json.loads(thresholds.read_text()) if thresholds.is_file() else None

    def aggregate_tracks(self, tracks: list[np.ndarray]) -> np.ndarray:
        """Unit descriptors [n, dim] of tracks of any length."""
        torch = load_torch()
        dim = int(self.config["dim"])
        for track in tracks:
            if np.asarray(track).shape[-1] != dim:
                raise FacelabError(f"tracks: descriptors have {np.asarray(track).shape[-1]} values; "
                                   f"this model takes {dim}")
        longest = max(len(t) for t in tracks)
        frames, mask = pad_tracks(tracks, longest)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(torch.from_numpy(frames).to(device), torch.from_numpy(mask).to(device))
        return out.cpu().numpy().astype(np.float32)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        descriptors = self.aggregate_tracks([np.asarray(f, np.float32) for f in batch["frames"]])
        out = {"descriptor": descriptors}
        for key in ("_row", "track_id"):
            if key in batch:
                out[key] = batch[key]
        return out

    def aggregate(self, request: AggregateRequest) -> dict:
        descriptor = self.aggregate_tracks([np.asarray(request.frames, np.float32)])[0]
        return {"descriptor": descriptor.tolist(), "frames": len(request.frames)}

    def match(self, request: MatchRequest) -> dict:
        descriptor = self.aggregate_tracks([np.asarray(request.frames, np.float32)])
        distances = metrics.pairwise_l2(descriptor, np.asarray(request.references, np.float32))[0]
        ids = request.reference_ids or [str(i) for i in range(len(distances))]
        nearest = int(distances.argmin())
        out = {"distances": distances.tolist(), "nearest": ids[nearest], "nearest_distance": float(distances[nearest])}
        if self.threshold is not None:
            out["threshold"] = self.threshold
            out["same"] = (distances <= self.threshold["distance"]).tolist()
        return out
