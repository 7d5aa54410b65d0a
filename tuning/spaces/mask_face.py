"""Search space of the mask's face method (Optuna define-by-run): the type CNN's width, input
size, crop context, learning rate and the box jitter it trains with; ASHA stops bad trials by
epoch. The face detector and the box regression have no knobs worth searching (see the task)."""

from __future__ import annotations


def space(trial) -> dict:
    trial.suggest_categorical("width", [8, 16, 32])
    trial.suggest_categorical("image_size", [64, 96, 128])
    trial.suggest_float("context", 0.0, 0.3)
    trial.suggest_float("lr", 3e-4, 5e-3, log=True)
    trial.suggest_float("aug_box", 0.0, 0.2)
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    return {}


# ASHA over epochs: rungs at 5, 15, 45
asha = {"time_attr": "epoch", "max_t": 100, "grace_period": 5, "reduction_factor": 3}
