"""A sweep's space is checked against the task's config model before any trial runs, and the
task's default config is always the sweep's first trial."""

from __future__ import annotations

import pytest

from facelab.errors import FacelabError
from facelab.tasks import get_task
from tuning import runner, spaces


def _space_with_typo(trial) -> dict:
    trial.suggest_categorical("model", ["svc"])
    trial.suggest_float("CC", 1e-2, 1e2, log=True)  # the config's key is "C"
    return {}


def test_a_space_key_the_config_lacks_fails_naming_it():
    task = get_task("sentiment")
    bad = spaces.SearchSpace(module="tests.bad_space", space=_space_with_typo)
    with pytest.raises(FacelabError, match=r"search space tests.bad_space: task 'sentiment' config: unknown key 'CC' "
                                           r"\(did you mean 'C'\?\)"):
        runner.check_space(task, bad, {}, runner.points_to_evaluate(bad, task.default_config, {}))


def test_the_sweep_refuses_a_bad_space_before_reading_data_or_starting_trials(monkeypatch, tmp_path):
    from ray import tune

    monkeypatch.setattr(spaces, "for_task", lambda task: spaces.SearchSpace(module="tests.bad_space",
                                                                            space=_space_with_typo))
    monkeypatch.setattr(tune, "Tuner", lambda *a, **k: pytest.fail("a trial was started"))
    monkeypatch.setattr(runner, "load_fit_data", lambda *a, **k: pytest.fail("data was read"))
    with pytest.raises(FacelabError, match="unknown key 'CC'"):
        runner.sweep("sentiment", tmp_path, str(tmp_path / "store"), samples=2)


def test_a_fixed_key_the_config_lacks_fails_naming_it(tmp_path):
    with pytest.raises(FacelabError, match=r"--config: task 'sentiment' config: unknown key 'kernal' "
                                           r"\(did you mean 'kernel'\?\)"):
        runner.sweep("sentiment", tmp_path, str(tmp_path / "store"), fixed={"kernal": "rbf"})


@pytest.mark.parametrize("name", ["sentiment", "crowd", "occlusion", "emotion"])
def test_the_default_config_is_the_first_point_and_no_point_twice(name):
    task = get_task(name)
    space = spaces.for_task(task)
    points = runner.points_to_evaluate(space, task.default_config, {})
    assert points[0] and {k: task.default_config[k] for k in points[0]} == points[0]
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert len(points) == 1 + len([p for p in space.extra_points if p != points[0]])


def test_fixed_values_leave_the_default_point():
    task = get_task("emotion")
    points = runner.points_to_evaluate(spaces.for_task(task), task.default_config, {"lr": 0.5})
    assert "lr" not in points[0]
