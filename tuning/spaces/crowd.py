"""Crowd search space: how faces are compared (nothing is trained, so every trial is cheap: the
sweep computes every variant's distances once and a trial only scores its own)."""

from __future__ import annotations


def space(trial) -> dict:
    method = trial.suggest_categorical("method", ["encoding", "landmarks"])
    if method == "encoding":
        trial.suggest_categorical("model", ["mean", "small", "large"])
        trial.suggest_categorical("tiles", ["whole", "detect"])
        return {}
    return {"model": "mesh"}  # landmarks use mediapipe's mesh, no encoder model


# The seed's winner: the mean of dlib's small and large encodings of each detected face.
seed_points = [{"method": "encoding", "model": "mean", "tiles": "detect"}]
