"""Age-gender search space (Optuna define-by-run), run under ASHA over epochs: optimiser and
age-label-distribution settings.

The architecture, input size and augmentation stay the task's defaults; Tune searches the
learning rate and weight decay, the width (years) of the age label distribution and the
weight of the expectation's L1 term. Trials are compared by validation age MAE.
"""

from __future__ import annotations


# ASHA on the reported `epoch`: rungs at 4, 8, 16, 32 epochs up to the config's epochs
asha = {"time_attr": "epoch", "max_t": 40, "grace_period": 4, "reduction_factor": 2}


def space(trial) -> dict:
    trial.suggest_float("lr", 3e-4, 5e-3, log=True)
    trial.suggest_float("weight_decay", 1e-3, 0.2, log=True)
    trial.suggest_float("age_sigma", 1.0, 4.0)
    trial.suggest_float("age_l1", 0.01, 0.5, log=True)
    return {}
