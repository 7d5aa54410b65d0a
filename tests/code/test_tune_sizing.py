"""The sweep's resource sizing and its errors, without running a sweep: torch trials sized for
the concurrency asked leave Ray Data a whole CPU (else they wait forever on their own data), a
sweep whose budget ran out before any report says what to do, file-level bad input reads well."""

from __future__ import annotations

import pandas as pd
import pytest

from facelab.errors import BadRow, FacelabError
from facelab.tasks import get_task
from facelab.tasks.torch_task import TRIAL_DRIVER_CPU


@pytest.mark.parametrize("cpus", [2, 4, 16])
@pytest.mark.parametrize("trials", [1, 2, 3, 8])
@pytest.mark.parametrize("task_name", ["fairface", "emotion"])  # a prepared-data and a plain torch task
def test_trials_leave_ray_data_a_whole_cpu(monkeypatch, task_name, cpus, trials):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": float(cpus)})
    per_trial = get_task(task_name).trial_cpus(trials)
    assert per_trial > 0
    assert trials * (per_trial + TRIAL_DRIVER_CPU) <= cpus - 1 + 1e-9


@pytest.mark.parametrize("task_name", ["sentiment", "fairface", "mask"])  # an estimator, a torch and a YOLO task
def test_one_trial_function_sized_for_the_concurrency_asked(monkeypatch, task_name):
    import ray
    from ray import tune

    from facelab import trial

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    task = get_task(task_name)
    bound = {}
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: bound.update(fn=fn, **kw) or fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, resources: bound.update(resources=resources) or fn)
    assert trial.trainable(task, {"some": "data"}, 3) is trial.trial
    assert bound["task_name"] == task_name and bound["trial_data"] == {"some": "data"}
    assert bound["options"] == task.trial_options(3) and bound["resources"] == task.trial_resources(3)


def test_sweep_without_a_report_says_how_to_go_on():
    from tuning.runner import require_reported

    require_reported(pd.DataFrame({"val_mean_accuracy": [None, 0.5]}), "val_mean_accuracy", "/s", 1.0)
    for frame in (pd.DataFrame({"trial_id": ["a"]}), pd.DataFrame({"val_mean_accuracy": [None]})):
        with pytest.raises(FacelabError, match=r"no trial .*'val_mean_accuracy' within the 14-minute budget.*--resume /s"):
            require_reported(frame, "val_mean_accuracy", "/s", 14.0)


def test_bad_row_names_only_what_is_known():
    assert str(BadRow("sub.csv", 0, "-", "file not found")) == "sub.csv: file not found"
    assert str(BadRow("a.csv", 0, "ImageID", "no row")) == "a.csv: field 'ImageID': no row"
    assert str(BadRow("a.csv", 7, "label", "not a number")) == "a.csv: row 7: field 'label': not a number"
    assert str(BadRow("a.csv", 7, "-", "too few columns")) == "a.csv: row 7: too few columns"
