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
