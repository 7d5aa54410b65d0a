"""MCS2019 tracks search space (Optuna define-by-run): the aggregator's margin, code size,
softmax temperature, learning rate and quality weighting; ASHA stops bad trials by epoch."""

from __future__ import annotations


def space(trial) -> dict:
    trial.suggest_float("margin", 0.01, 0.2, log=True)
    trial.suggest_categorical("code_size", [250, 500, 1000, 2000])
    trial.suggest_float("temperature", 0.3, 5.0, log=True)
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    if trial.suggest_categorical("quality", ["norm", "none"]) == "norm":
        # up to 64: on dlib descriptors of degraded frames the best power is high (`quality_power: auto`)
        trial.suggest_float("quality_power", 0.5, 64.0, log=True)
    return {"model": "aggregator"}


# The seed's winner (its margin, code size and learning rate), tried after the default config.
extra_points = [{"margin": 0.11, "code_size": 1000, "temperature": 1.0, "lr": 3e-4, "quality": "norm",
                "quality_power": 1.0}]

# ASHA over epochs: a trial behind its rung's best after 2 epochs (then 6, 18) stops early.
asha = {"time_attr": "epoch", "max_t": 50, "grace_period": 2, "reduction_factor": 3}
