"""The task registry contract, over every registered task, and the package layering."""

import ast
from pathlib import Path

import optuna
import pytest
from pydantic import BaseModel

from facelab.errors import FacelabError
from facelab.formats import FORMAT_NAMES, get_format
from facelab.tasks import ALL_TASKS, get_task, task_names
from tuning import spaces

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", task_names())
def test_task_contract(name):
    task = get_task(name)
    assert task.name == name and task.mode in ("max", "min") and task.seed
    assert task.format.task == (task.format_name or name)
    assert issubclass(task.Request, BaseModel) and callable(task.predictor_class)
    space = spaces.for_task(name)
    # the search space samples a config under Optuna, with no computation
    trial = optuna.create_study().ask()
    constants = space.space(trial)
    assert trial.params and isinstance(constants, dict)
    for point in getattr(space, "seed_points", []):
        assert set(point) <= set(trial.params) | set(task.default_config) | set(constants) | {"gamma_value"}


@pytest.mark.parametrize("name", sorted(set(ALL_TASKS) - set(task_names())))
def test_unimplemented_tasks_say_so(name):
    with pytest.raises(FacelabError, match="no model yet"):
        get_task(name)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_challenge_task_has_a_format(name):
    assert get_format(name).task == name


def test_layering():
    """facelab imports nothing from jobs, tuning or serve; platform/ is no package."""
    assert not (REPO / "platform" / "__init__.py").exists()
    for path in (REPO / "platform" / "facelab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for module in names:
                assert module.split(".")[0] not in {"jobs", "tuning", "serve"}, f"{path} imports {module}"


def test_a_graph_of_every_task_fits_on_a_two_core_laptop():
    """`facelab demo` and `facelab serve` deploy one replica per task plus the gallery and the
    gateway; their CPU reservations must fit a 2-CPU local Ray or Serve waits forever."""
    from serve.app import Gateway, GalleryModel, TaskModel

    reserved = len(task_names()) * TaskModel.ray_actor_options["num_cpus"] + sum(
        d.ray_actor_options["num_cpus"] for d in (GalleryModel, Gateway))
    assert reserved <= 2.0


def _drawn_config(task_name: str, fixed: dict) -> dict:
    from tuning.runner import _space_with

    task = get_task(task_name)
    complete = _space_with(spaces.for_task(task_name), task.default_config, fixed)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    constants = complete(trial)
    return {**trial.params, **constants}


def test_a_lightgbm_sentiment_trial_carries_none_of_the_seed_svc_keys():
    config = _drawn_config("sentiment", {"model": "lgbm"})
    assert config["model"] == "lgbm" and {"num_leaves", "learning_rate", "preprocess", "cv_folds"} <= set(config)
    assert not {"kernel", "degree", "C", "gamma"} & set(config)


def test_an_svc_sentiment_trial_keeps_the_svc_defaults_it_did_not_draw():
    config = _drawn_config("sentiment", {"model": "svc", "kernel": "rbf"})
    assert config["kernel"] == "rbf" and "C" in config and "gamma" in config and "degree" in config
    assert not {"num_leaves", "n_neighbors"} & set(config)


def test_the_completed_space_pickles_for_tune_checkpoints():
    import pickle

    from tuning.runner import _space_with

    for name in task_names():
        complete = _space_with(spaces.for_task(name), get_task(name).default_config, {})
        assert pickle.loads(pickle.dumps(complete)).func is complete.func
