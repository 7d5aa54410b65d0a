"""Classical classifiers for embedding tasks: one config -> one scikit-learn pipeline, k-fold CV
scoring for Tune trials, and the seed's k-fold CV ensemble (averaged probabilities) as the
final model, its folds fitted in parallel as Ray tasks.

A config is a full `facelab.task_config.EstimatorConfig` dict: `model` in svc | lgbm | rf | knn |
logreg, `preprocess` in none | l1 | l2 | standard, and the family's own hyper-parameters.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from facelab import metrics

MODEL_FILE = "ensemble.joblib"
# each family's own hyper-parameters, as `build` reads them
TREES = {"lgbm": 200, "rf": 300}  # n_estimators when the config leaves it null
FAMILY_KEYS = {"svc": {"kernel", "degree", "C", "gamma", "gamma_value"},
               "lgbm": {"num_leaves", "learning_rate", "n_estimators", "reg_lambda", "reg_alpha", "colsample_bytree"},
               "rf": {"n_estimators", "max_depth"}, "knn": {"n_neighbors", "weights"}, "logreg": {"C"}}


def other_families_keys(family: str) -> set[str]:
    """The hyper-parameters `build` ignores for `family` (those only other families read)."""
    return set().union(*FAMILY_KEYS.values()) - FAMILY_KEYS[family]


def _preprocessor(name: str):
    return {"none": None, "l1": Normalizer("l1"), "l2": Normalizer("l2"), "standard": StandardScaler()}[name]


def build(config: dict, *, seed: int = 0, n_jobs: int = 1) -> ClassifierMixin:
    """A fresh, unfitted pipeline for one config (every key of EstimatorConfig)."""
    family = config["model"]
    if family == "svc":
        from sklearn.svm import SVC

        gamma = config["gamma"]
        if gamma == "value":
            gamma = float(config["gamma_value"])
        from sklearn.calibration import CalibratedClassifierCV

        svc = SVC(kernel=config["kernel"], degree=int(config["degree"]), C=float(config["C"]),
                  gamma=gamma, decision_function_shape="ovr", random_state=seed)
        model = CalibratedClassifierCV(svc, ensemble=False)  # Platt-scaled probabilities for the ensemble mean
    elif family == "lgbm":
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(num_leaves=int(config["num_leaves"]), learning_rate=float(config["learning_rate"]),
                               n_estimators=int(config["n_estimators"] or TREES[family]), reg_lambda=float(config["reg_lambda"]),
                               reg_alpha=float(config["reg_alpha"]), colsample_bytree=float(config["colsample_bytree"]),
                               random_state=seed, n_jobs=n_jobs, verbose=-1)
    elif family == "rf":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=int(config["n_estimators"] or TREES[family]), max_depth=config["max_depth"],
                                       random_state=seed, n_jobs=n_jobs)
    elif family == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        model = KNeighborsClassifier(n_neighbors=int(config["n_neighbors"]), weights=config["weights"],
                                     n_jobs=n_jobs)
    elif family == "logreg":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=float(config["C"]), max_iter=2000, random_state=seed)
    else:
        raise ValueError(f"unknown model family '{family}'")
    pre = _preprocessor(config["preprocess"])
    return make_pipeline(pre, model) if pre is not None else make_pipeline(model)


def _fit_fold(config: dict, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, seed: int):
    return build(config, seed=seed).fit(x[train_idx], y[train_idx])


class CVEnsemble:
    """k models, each fitted on k-1 folds; predicts the mean of their class probabilities."""

    def __init__(self, members: list, classes: np.ndarray):
        self.members = members
        self.classes_ = np.asarray(classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_proba(x) for m in self.members], axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(1)]

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / MODEL_FILE
        joblib.dump(self, path)
        return path

    @staticmethod
    def load(model_dir: str | Path) -> "CVEnsemble":
        # Only called on a model folder that ModelStore.load has checksum-verified.
        return joblib.load(Path(model_dir) / MODEL_FILE)


def cross_validate(config: dict, x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Stratified k-fold estimate of a config (sequential: a Tune trial owns one CPU)."""
    oof = np.empty(len(y), dtype=object)
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        oof[test_idx] = _fit_fold(config, x, y, train_idx, seed).predict(x[test_idx])
    return metrics.classification(list(y), list(oof))


def fit_cv_ensemble(config: dict, x: np.ndarray, y: np.ndarray, *, folds: int = 10, seed: int = 0):
    """The seed's final model: `folds` members fitted in parallel as Ray tasks on the cluster.

    Returns the ensemble and its out-of-fold predictions (each row predicted by the member
    that did not see it), which give an honest estimate of its quality.
    """
    import ray

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    x_ref, y_ref = ray.put(x), ray.put(y)
    fit_remote = ray.remote(num_cpus=1)(_fit_fold)
    members = ray.get([fit_remote.remote(config, x_ref, y_ref, train_idx, seed + i) for i, (train_idx, _) in enumerate(splits)])
    oof = np.empty(len(y), dtype=object)
    for member, (_, test_idx) in zip(members, splits):
        oof[test_idx] = member.predict(x[test_idx])
    return CVEnsemble(members, members[0].classes_), oof
