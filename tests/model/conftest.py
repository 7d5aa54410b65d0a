"""A sentiment model tuned, refitted and promoted once for the model tests."""

import pytest

from facelab.formats import get_format


@pytest.fixture(scope="session")
def sentiment_data(tmp_path_factory):
    return get_format("sentiment").synthesize(tmp_path_factory.mktemp("sentiment-data"), n=500, seed=7)


@pytest.fixture(scope="session")
def tuned_sentiment(ray_local, sentiment_data, tmp_path_factory):
    """tune (4 Optuna trials on Ray Tune) -> refit as the CV ensemble -> store -> promote."""
    from tuning.runner import sweep

    store = str(tmp_path_factory.mktemp("sentiment-store"))
    result = sweep("sentiment", sentiment_data, store, samples=4)
    return store, result



@pytest.fixture(scope="session")
def train_promoted(ray_local, tmp_path_factory):
    """`facelab train --promote` of a task on a data folder into a fresh store, with the Ray Train
    checkpoints in a temporary folder: fit(task, data, config) -> (data, store, run_id, metrics)."""
    from facelab.train import train

    def fit(task: str, data, config: dict) -> tuple:
        store = str(tmp_path_factory.mktemp(f"{task}-store"))
        config = {**config, "storage_path": str(tmp_path_factory.mktemp(f"{task}-train"))}
        run_id, metrics = train(task, data, store, config=config, promote=True)
        return data, store, run_id, metrics

    return fit


@pytest.fixture(scope="session")
def checked_mask_submission():
    """`submit` of a mask method into OUT, checked against the Blitz layout (one row per test image
    in the sample submission's order, known types, boxes inside the 512x512 images), then scored:
    check(task, data, store, out) -> scores."""
    import pandas as pd

    from facelab.formats.mask import MASK_TYPES, parse_bbox
    from facelab.predict import submit

    def check(task: str, data, store: str, out) -> dict:
        summary = submit(task, data, out, store)
        written = pd.read_csv(out)
        expected = pd.read_csv(data / "sample_submission.csv")["ImageID"]
        assert summary["rows"] == len(expected) and list(written["ImageID"]) == list(expected)
        assert set(written["masktype"]) <= set(MASK_TYPES)
        for text in written["bbox"]:
            x0, y0, x1, y1 = parse_bbox(text)
            assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
        return get_format("mask").score(out, data / "test_truth.csv")

    return check
