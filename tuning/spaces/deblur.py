"""De-blurring search space (Optuna define-by-run), run under ASHA over epochs: the seed's SRCNN
(with or without the global residual) against the residual network and the multi-scale residual
U-Net, learning rate, crop size,
batch size and the plateau scheduler's patience. Every trial reports each epoch's val_ssim."""

from __future__ import annotations


# ASHA on the reported `epoch`: rungs at 2, 4, 8, ... epochs up to the config's epochs
asha = {"time_attr": "epoch", "max_t": 40, "grace_period": 2, "reduction_factor": 2}


def space(trial) -> dict:
    arch = trial.suggest_categorical("arch", ["srcnn", "resnet", "multiscale"])
    if arch == "srcnn":
        trial.suggest_categorical("residual", [False, True])
    else:  # one set of channel choices: Optuna refuses a parameter whose choices depend on the branch
        trial.suggest_categorical("channels", [16, 32, 48])
        if arch == "resnet":
            trial.suggest_int("blocks", 2, 8)
        else:
            trial.suggest_int("scale_blocks", 1, 3)
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("crop", [64, 96, 128])
    trial.suggest_categorical("batch_size", [4, 8, 16])
    trial.suggest_int("patience", 2, 6)
    return {}
