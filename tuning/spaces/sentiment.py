"""Sentiment search space (Optuna define-by-run): SVC and LightGBM, RandomForest and KNN baselines."""

from __future__ import annotations

from facelab.estimators import other_families_keys


def space(trial) -> dict:
    model = trial.suggest_categorical("model", ["svc", "lgbm", "rf", "knn"])
    trial.suggest_categorical("preprocess", ["none", "l1", "l2", "standard"])
    if model == "svc":
        kernel = trial.suggest_categorical("kernel", ["poly", "rbf", "linear"])
        if kernel == "poly":
            trial.suggest_int("degree", 2, 4)
        trial.suggest_float("C", 1e-2, 1e2, log=True)
        if trial.suggest_categorical("gamma", ["scale", "value"]) == "value":
            trial.suggest_float("gamma_value", 1e-4, 1.0, log=True)
    elif model == "lgbm":
        trial.suggest_int("num_leaves", 8, 128, log=True)
        trial.suggest_float("learning_rate", 0.01, 0.3, log=True)
        trial.suggest_int("n_estimators", 50, 600, log=True)
        trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True)
        trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True)
        trial.suggest_float("colsample_bytree", 0.3, 1.0)
    elif model == "rf":
        trial.suggest_int("n_estimators", 100, 500, log=True)
    else:
        trial.suggest_int("n_neighbors", 3, 50, log=True)
        trial.suggest_categorical("weights", ["uniform", "distance"])
    return {"cv_folds": 5, "ensemble_folds": 10}


def unused_defaults(suggested: dict) -> set[str]:
    """The task's default (the seed's SVC) keys that a trial of another family would carry for nothing."""
    return other_families_keys(suggested["model"])
