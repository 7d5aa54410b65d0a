"""One behavioural contract over every registered task (the way timm tests every registered model).

For each task: its declarations hold together (config model, search space, request and response
models), a tiny fit on its demo data stores a run with the task's metric, the stored model
predicts the submission split through the batch predictor (every row, in order), and one valid
and one malformed request go through the task's Serve request model: the valid one answers with
what the response model declares, the malformed one is refused with a 4xx-class error.
Per-task quality checks stay in the tasks' own test files.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from facelab.converters import converter_names
from facelab.errors import FacelabError
from facelab.predict import predict_dataset, predict_rows
from facelab.store import ModelStore
from facelab.tasks import Task, get_task, task_names
from facelab.train import train
from facelab.uploads import Binary, UploadError
from tuning import spaces
from tuning.runner import check_space, points_to_evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def answer_request(task: Task, predictor, body: dict):
    """A request body through the task's Serve path without HTTP: validate, rows, predict, answer."""
    request = task.Request.model_validate(body)
    rows, batched = task.request_rows(request)
    return task.response(predict_rows(predictor, rows), batched)


@pytest.mark.parametrize("name", task_names())
def test_declarations(name):
    """Cheap: no Ray. The declarations every caller relies on, without probing."""
    task = get_task(name)
    assert task.name == name and task.mode in ("max", "min") and task.reference
    assert task.format.task == (task.format_name or name)
    assert task.config() == task.default_config
    task.check_keys(task.demo_config, source="demo_config")
    assert issubclass(task.Request, BaseModel) and callable(task.predictor_class)
    assert task.Answer is None or issubclass(task.Answer, BaseModel)
    assert task.report_split is None or task.report_split in task.fit_splits
    for body in task.actions.values():
        assert issubclass(body, BaseModel)
    assert set(task.converters) <= set(converter_names())
    space = spaces.for_task(task)
    points = points_to_evaluate(space, task.default_config, {})
    check_space(task, space, {}, points)  # every key a sweep can draw exists in the config model
    assert points[0] and all(task.default_config[k] == v for k, v in points[0].items()), "default config goes first"


@pytest.fixture(scope="module")
def contract_store(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("contract-store"))


@pytest.mark.parametrize("name", task_names())
def test_fit_predict_and_serve(name, ray_local, contract_store, tmp_path_factory):
    task = get_task(name)
    data = task.demo_data(tmp_path_factory.mktemp(f"data-{name}"))

    run_id, metrics = train(name, data, contract_store, config=task.demo_config, promote=True)
    assert task.metric in metrics and math.isfinite(float(metrics[task.metric]))
    run = ModelStore(contract_store).load(name)
    assert run.run_id == run_id and run.config == task.config(task.demo_config)

    read = task.format.read(data, task.submit_split)
    predictions = predict_dataset(task, run.model_dir, read.dataset, actors=1)
    assert len(predictions) == read.dataset.count()
    if "_row" in predictions:
        assert list(predictions["_row"]) == sorted(predictions["_row"])

    predictor = task.predictor_class(str(run.model_dir))
    good, bad = task.demo_requests(data)
    answer = answer_request(task, predictor, good)
    if task.Response is None:
        assert isinstance(answer, Binary) and answer.data.startswith(PNG_MAGIC)
    else:
        task.Response.model_validate(answer)
    with pytest.raises((ValidationError, UploadError, FacelabError)):
        answer_request(task, predictor, bad)


def test_every_converter_belongs_to_one_task():
    declared = [name for task in task_names() for name in get_task(task).converters]
    assert sorted(declared) == sorted(converter_names())


def test_a_response_that_breaks_its_model_is_caught():
    """The response check above can fail: an answer missing a declared field is refused."""
    task = get_task("sentiment")
    with pytest.raises(ValidationError):
        task.Response.model_validate({"label": "positive"})
    with pytest.raises(ValidationError):
        task.Response.model_validate({"predictions": [{"label": "x", "probabilities": {"x": np.nan}, "extra": 1}]})
