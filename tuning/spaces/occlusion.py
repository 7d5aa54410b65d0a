"""Occlusion search space (Optuna define-by-run): the female:male loss weight with the learning rate.

The seed tried female weights 1.0-1.5 (best 1.05 after 3 epochs, unstable) and kept 1.0 in its
final colour/grey ensemble; the range goes a little beyond on both sides. Everything else comes
from the task's default config (ensemble on, level weights on).
"""

from __future__ import annotations


def space(trial) -> dict:
    trial.suggest_float("female_weight", 0.8, 2.0, log=True)
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    return {}


# The seed's final model (no gender weight) and its best gender weight are always tried.
seed_points = [{"female_weight": 1.0, "lr": 1e-3}, {"female_weight": 1.05, "lr": 1e-3}]
