"""Synth (DCGAN) search space (Optuna define-by-run): the two Adam learning rates, beta1, label
smoothing and discriminator dropout. The DCGAN sizes stay; ASHA stops trials whose samples'
face rate lags.
"""

from __future__ import annotations


def space(trial) -> dict:
    trial.suggest_float("lr", 5e-5, 5e-4, log=True)
    trial.suggest_float("d_lr", 5e-5, 5e-4, log=True)
    trial.suggest_categorical("beta1", [0.0, 0.5])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_float("d_dropout", 0.0, 0.4)
    return {}


asha = {"max_t": 150, "grace_period": 20, "reduction_factor": 3}
