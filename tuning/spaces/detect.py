"""Face detection search space: which pretrained detector, how far to upsample, whether to pad.

`min_side` 160 leaves the ~400x300 face-mask images as they are; 480-800 upsample them 1.2-2.7x
so small faces reach the detectors' minimum size (dlib HOG ~80 px). The score threshold is not
searched: AP is threshold-free, and the refit sets it to the best-F1 score on val.
"""

from __future__ import annotations

from facelab.faces import DETECTORS


def space(trial) -> dict:
    trial.suggest_categorical("model", list(DETECTORS))
    trial.suggest_categorical("min_side", [160, 480, 640, 800])
    trial.suggest_categorical("pad", [0.0, 0.15])
    return {"threshold": None}
