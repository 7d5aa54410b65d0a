"""The Tune results plot: its panels and the best trial it stars follow the sweep and its mode."""

import pandas as pd

from facelab import plots


def _trials() -> pd.DataFrame:
    return pd.DataFrame({"score": [0.002, 0.006, 0.0075], "config/female_weight": [1.0, 1.3, 1.2],
                         "config/lr": [1e-3, 1e-3, 2e-3], "config/epochs": [8, 8, 8]})


def test_best_trial_follows_the_mode():
    assert plots.best_trial(_trials(), "score", "min") == 0
    assert plots.best_trial(_trials(), "score", "max") == 2


def test_panels_are_the_parameters_the_sweep_varied():
    frame = _trials().assign(**{"config/model": ["svc", "lgbm", "svc"], "config/C": [1.0, None, 3.0],
                                "config/num_leaves": [None, 31, None]})
    # constant (epochs), categorical (model) and set-only-once (num_leaves) columns are no axis
    assert plots._varied_parameters(frame, "config/model") == ["config/female_weight", "config/lr", "config/C"]


def test_the_plot_is_written_with_and_without_a_model_family(tmp_path):
    for frame in (_trials(), _trials().assign(**{"config/model": ["svc", "lgbm", "rf"]})):
        path = plots.tune_results_png(frame, "score", tmp_path / "tune.png", mode="min")
        assert path.stat().st_size > 5000
