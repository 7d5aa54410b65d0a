"""Occlusion search space (Optuna define-by-run), run under ASHA over epochs: the female:male
loss weight with the learning rate.

The seed tried female weights 1.0-1.5 (best 1.05 after 3 epochs, unstable) and kept 1.0 in its
final colour/grey ensemble; the range goes a little beyond on both sides. Everything else is the
task's default config (ensemble on, level weights on).
"""

from __future__ import annotations


# ASHA on the reported `epoch`: rungs at 3, 6, 12, 24 epochs up to the config's epochs
asha = {"time_attr": "epoch", "max_t": 30, "grace_period": 3, "reduction_factor": 2}


def space(trial) -> dict:
    trial.suggest_float("female_weight", 0.8, 2.0, log=True)
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    return {}


# Besides the default config (the seed's final model, no gender weight), the seed's best gender weight.
extra_points = [{"female_weight": 1.05, "lr": 1e-3}]
