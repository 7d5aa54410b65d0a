"""Verify search space: the face detector, the encoder model (dlib small, large or the mean of both
distances) and whether an image without a detected face is encoded whole. Every detector's codes are
computed once before the trials (facelab.tasks.verify.TUNED_DETECTORS); a trial is a 10-fold
threshold cross-validation over the pairs, a few milliseconds of numpy."""

from __future__ import annotations

from facelab.tasks.verify import TUNED_DETECTORS


def space(trial) -> dict:
    trial.suggest_categorical("detector", list(TUNED_DETECTORS))
    trial.suggest_categorical("model", ["small", "large", "mean"])
    trial.suggest_categorical("fallback_whole", [True, False])
    return {"jitters": 0, "upsample": 1.0}
