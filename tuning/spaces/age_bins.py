"""Age-bins search space (Optuna define-by-run), run under ASHA: classifier family and size, image
size, epochs, learning rate, and the seed's central-crop doubling on or off.

Trials train on train only and are scored on val (`merge_val` is off here, whatever the task's
default says), so ASHA compares held-out scores; the promoted model is the best trial's own
weights, trained on train.
"""

from __future__ import annotations

from facelab.tasks.age_bins import SEED_CROP

FAMILIES = ("yolov8", "yolo11")
SIZES = ("n", "s", "m")
MODELS = [f"{family}{size}" for family in FAMILIES for size in SIZES]  # one config key: `model`

# ASHA over the reported epoch: rungs at 3, 9, 27 epochs
asha = {"time_attr": "epoch", "max_t": 60, "grace_period": 3, "reduction_factor": 3}


def space(trial) -> dict:
    trial.suggest_categorical("model", MODELS)
    trial.suggest_categorical("imgsz", [96, 128, 160, 200])
    trial.suggest_categorical("epochs", [20, 40, 60])
    trial.suggest_float("lr0", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("crop_double", [0.0, SEED_CROP])
    return {"merge_val": False}
