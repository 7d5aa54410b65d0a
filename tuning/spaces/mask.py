"""Mask search space (Optuna define-by-run), run under ASHA: model family and size, image size,
epochs, learning rate and the augmentation that matters most on a few hundred images.

Families: yolov5 (the seed's; ultralytics' YAML is its anchor-free v5u form), yolov8, yolo11;
sizes n/s/m of each. Epochs are searched too: ASHA stops a poor trial at its first rungs, so a
long budget is only spent on trials that earn it. The seed's own run (YOLOv5l from pretrained
weights, 100 epochs) is not a seed point: without pretrained weights it is not the seed's model,
and an L model from scratch does not fit a CPU budget.
"""

from __future__ import annotations


FAMILIES = ("yolov5", "yolov8", "yolo11")
SIZES = ("n", "s", "m")
MODELS = [f"{family}{size}" for family in FAMILIES for size in SIZES]  # one config key: `model`

# ASHA over the reported epoch: rungs at 5, 15, 45 epochs
asha = {"time_attr": "epoch", "max_t": 100, "grace_period": 5, "reduction_factor": 3}


def space(trial) -> dict:
    trial.suggest_categorical("model", MODELS)
    trial.suggest_categorical("imgsz", [256, 320, 416, 512, 640])
    trial.suggest_categorical("epochs", [30, 60, 100])
    trial.suggest_float("lr0", 3e-4, 1e-2, log=True)
    trial.suggest_float("mixup", 0.0, 0.3)
    trial.suggest_float("degrees", 0.0, 10.0)
    trial.suggest_categorical("mosaic", [0.5, 1.0])
    return {}
