"""Backbone search space (Optuna define-by-run), run under ASHA over epochs: the optimiser and the
weights of the heads' losses (how much each source's labels shape the shared trunk). Trials are
compared by validation mean accuracy (gender, race, emotion, age within 5 years)."""

from __future__ import annotations

# ASHA on the reported `epoch`: rungs at 2, 4, 8 epochs up to the config's epochs
asha = {"time_attr": "epoch", "max_t": 12, "grace_period": 2, "reduction_factor": 2}


def space(trial) -> dict:
    trial.suggest_float("lr", 5e-4, 5e-3, log=True)
    trial.suggest_float("weight_decay", 1e-3, 0.2, log=True)
    trial.suggest_float("emotion_weight", 0.5, 2.0)
    trial.suggest_float("race_weight", 0.25, 1.0)
    return {}
