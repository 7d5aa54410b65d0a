"""FairFace search space (Optuna define-by-run): the multi-head MLP's width, depth, dropout,
learning rate and class weighting; ASHA stops bad trials by epoch."""

from __future__ import annotations


def space(trial) -> dict:
    trial.suggest_categorical("width", [128, 256, 512, 1024])
    trial.suggest_int("depth", 1, 3)
    trial.suggest_float("dropout", 0.0, 0.5)
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("class_weights", ["none", "inverse"])
    return {"model": "mlp"}


# ASHA over epochs: a trial behind its rung's best after 4 epochs (then 12, 36) stops early.
asha = {"time_attr": "epoch", "max_t": 100, "grace_period": 4, "reduction_factor": 3}
