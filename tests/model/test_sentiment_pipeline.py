"""Sentiment end to end on a local Ray: tune -> promote -> submit -> score."""

import json

import numpy as np
import pandas as pd
import pytest

from facelab.formats import get_format
from facelab.predict import submit
from facelab.store import ModelStore

FMT = get_format("sentiment")


def test_tune_promotes_a_stored_run(tuned_sentiment):
    store_uri, result = tuned_sentiment
    store = ModelStore(store_uri)
    assert result["trials"] == 4 and result["promoted"]
    assert store.promoted("sentiment") == result["run_id"]
    run = store.load("sentiment")
    assert {"tune_results.csv", "tune_results.png", "confusion_matrix.png", "ensemble.joblib"} <= {
        p.name for p in run.model_dir.iterdir()}
    trials = pd.read_csv(run.model_dir / "tune_results.csv")
    assert len(trials) == 4 and trials["f1_weighted"].max() == pytest.approx(result["trial_f1_weighted"])
    assert run.manifest["data_fingerprint"] and run.config["model"] == result["best_config"]["model"]


def test_submission_scores_well_above_chance(tuned_sentiment, sentiment_data, tmp_path):
    store_uri, _ = tuned_sentiment
    out = tmp_path / "submission.csv"
    summary = submit("sentiment", sentiment_data, out, store_uri)
    assert summary["rows"] == len(pd.read_csv(sentiment_data / "test.csv")) and summary["bad_rows"] == 0
    scores = FMT.score(out, sentiment_data / "test_truth.csv")
    truth = pd.read_csv(sentiment_data / "test_truth.csv")["label"]
    majority = (truth == truth.mode()[0]).mean()
    # the synthetic task is learnable: a working model is far above predicting the majority class
    assert scores["accuracy"] > majority + 0.2
    assert scores["f1_weighted"] > 0.7


def test_submit_skip_bad_finishes_good_rows(tuned_sentiment, sentiment_data, tmp_path):
    store_uri, _ = tuned_sentiment
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.csv", "val.csv", "sample_submission.csv"):
        (data / name).write_bytes((sentiment_data / name).read_bytes())
    test = pd.read_csv(sentiment_data / "test.csv")
    test.loc[5, "embeddings"] = "[1.0, nan]"
    test.to_csv(data / "test.csv", index=False)
    with pytest.raises(Exception, match="row 7: field 'embeddings'"):
        submit("sentiment", data, tmp_path / "strict.csv", store_uri)
    summary = submit("sentiment", data, tmp_path / "sub.csv", store_uri, skip_bad=True)
    assert summary["rows"] == len(test) - 1 and summary["bad_rows"] == 1
    bad = pd.read_csv(summary["bad_rows_file"])
    assert bad.loc[0, "row"] == 7 and bad.loc[0, "field"] == "embeddings"
    written = pd.read_csv(tmp_path / "sub.csv", keep_default_na=False)
    assert len(written) == len(test) and written.loc[5, "label"] == "" and (written["label"] != "").sum() == len(test) - 1


def test_batch_predictor_matches_the_stored_ensemble(tuned_sentiment, sentiment_data):
    from facelab.tasks.sentiment import SentimentPredictor

    run = ModelStore(tuned_sentiment[0]).load("sentiment")
    predictor = SentimentPredictor(str(run.model_dir))
    x = np.array([json.loads(t) for t in pd.read_csv(sentiment_data / "test.csv")["embeddings"].head(8)], np.float32)
    out = predictor({"embedding": x})
    proba = np.stack([out[f"p_{c}"] for c in ("negative", "neutral", "positive")], 1)
    assert np.allclose(proba.sum(1), 1.0)
    assert list(out["label"]) == list(predictor.model.predict(x))
