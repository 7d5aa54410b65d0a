"""The task registry contract, over every registered task, and the package layering."""

import ast
from pathlib import Path

import optuna
import pytest
from pydantic import BaseModel

from facelab.errors import FacelabError
from facelab.formats import FORMAT_NAMES, get_format
from facelab.tasks import get_task, task_names
from tuning import spaces

REPO = Path(__file__).resolve().parents[2]


def test_unknown_tasks_are_refused_with_a_suggestion():
    with pytest.raises(FacelabError, match=r"unknown task 'sentimnet' \(did you mean 'sentiment'\?\)"):
        get_task("sentimnet")


def test_listing_tasks_imports_no_task_module():
    import subprocess
    import sys

    code = ("import sys; from facelab.tasks import task_names; names = task_names(); "
            "print(len(names), any(m.startswith('facelab.tasks.') and m.split('.')[-1] not in ('base',) "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(task_names())), "False"]


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
    complete = _space_with(spaces.for_task(task), task.default_config, fixed)
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
        complete = _space_with(spaces.for_task(get_task(name)), get_task(name).default_config, {})
        assert pickle.loads(pickle.dumps(complete)).func is complete.func
