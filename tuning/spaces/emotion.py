"""Emotion search space (Optuna define-by-run): optimiser, regularisation and augmentation strength.

The seed's network (3 VGG blocks from 64 channels, two dense layers of 1024) stays; Tune
searches the SGD learning rate and weight decay, the LR schedule, dropout, label smoothing and
how hard the images are augmented. ASHA stops trials whose PublicTest accuracy lags.
"""

from __future__ import annotations


def space(trial) -> dict:
    trial.suggest_float("lr", 3e-3, 5e-2, log=True)
    trial.suggest_float("weight_decay", 1e-5, 2e-3, log=True)
    trial.suggest_categorical("schedule", ["plateau", "cosine"])
    trial.suggest_float("dropout", 0.2, 0.6)
    trial.suggest_categorical("label_smoothing", [0.0, 0.1])
    trial.suggest_float("erase", 0.0, 0.7)
    trial.suggest_float("aug_rotate", 0.0, 15.0)
    return {}


asha = {"max_t": 100, "grace_period": 10, "reduction_factor": 3}
