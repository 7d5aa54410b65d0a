"""One behavioural contract over every registered task (the way timm tests every registered model).

For each task: its declarations hold together (config model, search space, request and response
models); from a working directory of its own, with relative paths only (issue: a relative --data
failed in every Tune trial of `detect`), a 1-trial sweep (the task's shared fit: fit_cases.py's
case, else its demo config on its demo data) stores and promotes a run with the task's metric, the stored model writes a submission of every row through the batch
predictor and it scores, and one valid and one malformed request go through the task's Serve
request model: the valid one answers with what the response model declares, the malformed one is
refused with a 4xx-class error.
Per-task quality checks stay in the tasks' own test files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from facelab.converters import converter_names
from facelab.errors import FacelabError
from facelab.predict import predict_rows
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


# The first task whose sweep adopts its trial's checkpoint: `train` (the task's fit) runs for it too.
TRAINED_TOO = next((name for name in task_names() if get_task(name).reports_per_epoch), None)


@pytest.mark.parametrize("name", task_names())
def test_fit_predict_and_serve(name, task_fit, monkeypatch, facelab_cli):
    """The whole lifecycle from a working directory of its own with relative paths only (Tune
    trials, Train workers and predictor actors run elsewhere): a 1-trial sweep (the task's shared
    fit, whose quality its own test file checks) stores and promotes a run, the submission has
    every row and scores, and the stored model answers a valid request as the response model says
    and refuses a malformed one."""
    task = get_task(name)
    fit = task_fit(name)
    tmp_path, data, config, tuned = fit.workdir, fit.data, fit.config, fit.tuned
    monkeypatch.chdir(tmp_path)
    assert tuned["task"] == name and tuned["trials"] == 1 and tuned["promoted"]
    assert math.isfinite(float(tuned[f"trial_{task.metric}"]))
    run = ModelStore("store").load(name, check_config=task.config)
    assert run.run_id == tuned["run_id"] and run.model_dir.is_relative_to(tmp_path / "store")
    if name == TRAINED_TOO:  # the sweep adopted its trial's checkpoint: `train` goes through the task's fit
        run_id, metrics = train(name, data, "store", config=config)
        assert task.metric in metrics and (tmp_path / "store" / name / "runs" / run_id / "run.json").is_file()

    submission = Path("out") / task.format.submission_name
    written = fit.submission()  # submit(name, data, submission, "store") from this folder, shared with the task's tests
    assert written["run_id"] == run.run_id
    assert written["rows"] == task.format.read(tmp_path / data, task.submit_split).dataset.count() > 0
    written_to = Path(written["submission"])  # the out path, or the folder inside it a layout writes (deblur)
    assert written_to == tmp_path / submission or tmp_path / submission in written_to.parents
    scores = facelab_cli("score", "--task", name, "--submission", str(written_to.relative_to(tmp_path)),
                     "--truth", str(data / task.format.synthetic_truth))
    assert scores["task"] == name and any(isinstance(v, (int, float)) for k, v in scores.items() if k != "task")

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
