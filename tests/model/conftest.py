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
