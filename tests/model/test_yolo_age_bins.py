"""The age-bins task end to end, CI-sized: `facelab train` (one Tune trial, the seed's train+val
and central-crop doubling) on a tiny data set in the Blitz layout whose three bins differ in
colour, so a working classifier must score near 1 and a broken one (labels shuffled, classes
mapped wrongly) near 1/3; then submit, score with its confusion matrix, and the Serve answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facelab.formats import get_format
from facelab.formats.age_bins import AGE_BINS
from facelab.store import ModelStore

from fit_cases import AGE_BIN_HUES as HUES


@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared age-bins fit (fit_cases.py: three bins that differ in colour)."""
    return task_fit("age-bins")


@pytest.fixture(scope="module")
def colour_bins(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def trained(fit):
    return fit.store, fit.run_id, fit.metrics


def test_train_stores_the_best_epoch_with_its_plots(trained, fit):
    store, run_id, metrics = trained
    run = ModelStore(store).load("age-bins")
    assert run.run_id == run_id
    assert {"model.pt", "config.json", "history.csv", "history.png", "confusion_matrix.png"} <= {
        p.name for p in run.model_dir.iterdir()}
    assert metrics["val_in_training"] == 1.0  # the seed's train+val: val is in-sample, and says so
    assert 1 <= metrics["epoch"] <= fit.config["epochs"] and "f1_weighted" in metrics and "accuracy" in metrics


def test_submission_scores_far_above_chance(trained, colour_bins, tmp_path):
    from facelab.predict import submit

    out = tmp_path / "submission.csv"
    summary = submit("age-bins", colour_bins, out, trained[0])
    assert summary["rows"] == len(pd.read_csv(colour_bins / "sample_submission.csv"))
    fmt = get_format("age-bins")
    scores = fmt.score(out, colour_bins / "test_truth.csv")
    assert scores["accuracy"] > 0.9 and scores["f1_weighted"] > 0.9  # chance is 1/3
    plots = fmt.plots(out, colour_bins / "test_truth.csv", tmp_path / "plots")
    assert [p.name for p in plots] == ["confusion_matrix.png"] and plots[0].stat().st_size > 0


def test_serve_rows_and_answers(trained, colour_bins):
    from facelab.tasks import get_task

    task = get_task("age-bins")
    good, bad = task.demo_requests(colour_bins)
    request = task.Request.model_validate({"images": [good["image"], good["image"]]})
    rows, batched = task.request_rows(request)
    assert batched and len(rows) == 2
    predictor = task.predictor_class(str(ModelStore(trained[0]).load("age-bins").model_dir))
    out = predictor({"image": np.stack([r["image"] for r in rows])})
    answers = task.response([{k: v[i] for k, v in out.items()} for i in range(2)], batched=True)["predictions"]
    assert answers[0] == answers[1] and answers[0]["age"] in HUES
    assert list(answers[0]["probabilities"]) == list(AGE_BINS)
    assert sum(answers[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert max(answers[0]["probabilities"], key=answers[0]["probabilities"].get) == answers[0]["age"]
