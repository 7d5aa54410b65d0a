"""Typed task configs: an unknown or ill-typed key is an error naming it (in a config file, a
stored run, a CLI option), `facelab config show` round-trips, and every task's defaults are
complete and described."""

from __future__ import annotations

import json
import typing

import pytest
import yaml
from typer.testing import CliRunner

from facelab.errors import FacelabError
from facelab.store import ModelStore
from facelab.task_config import TorchConfig, YoloClassifyConfig, YoloDetectConfig
from facelab.tasks import get_task, task_names
from jobs.cli import app

TASKS = task_names()
runner = CliRunner()


def _numeric_key(task) -> str:
    """A key whose default is a number (not a bool): every task has one."""
    return next(k for k, v in task.default_config.items() if isinstance(v, (int, float)) and not isinstance(v, bool))


@pytest.mark.parametrize("name", TASKS)
def test_a_typo_key_fails_naming_the_key_and_a_suggestion(name):
    task = get_task(name)
    key = "epochs" if "epochs" in task.default_config else next(iter(task.default_config))
    typo = f"{key}x"
    with pytest.raises(FacelabError) as caught:
        task.config({typo: task.default_config[key]}, source="my.yaml")
    message = str(caught.value)
    assert message.startswith(f"my.yaml: task '{name}' config: unknown key '{typo}' (did you mean '{key}'?)")
    assert "valid keys: " + ", ".join(task.default_config) in message
    assert "\n" not in message


@pytest.mark.parametrize("name", TASKS)
def test_an_ill_typed_value_fails_naming_the_key(name):
    task = get_task(name)
    key = _numeric_key(task)
    with pytest.raises(FacelabError, match=f"task '{name}' config: key '{key}': .*'lots'"):
        task.config({key: "lots"})
    with pytest.raises(FacelabError, match="a config is a mapping"):
        task.config(["epochs", 3])


def test_a_subclass_default_keeps_the_base_bounds_and_description():
    task = get_task("mask-face")  # redeclares epochs, lr, ... with its own defaults
    with pytest.raises(FacelabError, match="key 'epochs': Input should be greater than or equal to 1"):
        task.config({"epochs": 0})
    with pytest.raises(FacelabError, match="key 'lr': Input should be greater than 0"):
        task.config({"lr": -1.0})
    assert task.Config.model_fields["epochs"].description == TorchConfig.model_fields["epochs"].description


@pytest.mark.parametrize("name", TASKS)
def test_every_key_is_described_and_redeclared_keys_keep_their_bounds(name):
    config = get_task(name).Config
    for key, field in config.model_fields.items():
        assert field.description and "\n" not in field.description.strip(), f"{name}: '{key}' has no one-line description"
        for base in config.__mro__[1:]:
            inherited = getattr(base, "__pydantic_fields__", {}).get(key)
            if inherited is not None:
                narrowed = typing.get_origin(field.annotation) is typing.Literal
                assert narrowed or field.metadata == inherited.metadata, f"{name}: '{key}' lost {base.__name__}'s bounds"
                break


@pytest.mark.parametrize("name", TASKS)
def test_config_show_round_trips_to_the_default_config(name, tmp_path):
    task = get_task(name)
    result = runner.invoke(app, ["config", "show", "--task", name])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"# {name}: default config")
    described = [line for line in lines[1:] if line.startswith("# ")]
    assert len(described) == len(task.default_config)  # one description line per key
    saved = tmp_path / "config.yaml"
    saved.write_text(result.output)
    loaded = yaml.safe_load(saved.read_text())
    assert loaded == task.default_config
    assert task.config(loaded, source=str(saved)) == task.default_config


@pytest.mark.parametrize("name", TASKS)
def test_the_demo_config_is_a_valid_override(name):
    task = get_task(name)
    assert task.check_keys(task.demo_config, source="demo_config") == task.demo_config
    full = task.config(task.demo_config)
    assert {k: full[k] for k in task.demo_config} == task.demo_config


def test_train_with_a_typo_in_its_config_file_exits_2_before_ray_starts(tmp_path, monkeypatch):
    import facelab.cluster
    import jobs.tune

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(facelab.cluster, "connect", no_ray)  # where `facelab train` finds it when it runs
    monkeypatch.setattr(jobs.tune, "connect", no_ray)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch": 3}))
    for command in ("train", "tune"):
        result = runner.invoke(app, [command, "--task", "emotion", "--data", str(tmp_path), "--config", str(bad)])
        assert result.exit_code == 2, result.output
        assert (f"error: {bad}: task 'emotion' config: unknown key 'epoch' (did you mean 'epochs'?); valid keys: "
                in result.output)
    bad.write_text(json.dumps({"epochs": "three"}))
    result = runner.invoke(app, ["train", "--task", "emotion", "--data", str(tmp_path), "--config", str(bad)])
    assert result.exit_code == 2 and "key 'epochs'" in result.output


def test_a_stored_run_with_an_unknown_key_is_an_error_naming_the_run(tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "crowd_config.json").write_text("{}")
    task = get_task("crowd")
    good = store.save("crowd", model, config=task.default_config, metrics={}, data_fingerprint="x")
    assert store.load("crowd", good, check_config=task.config).config == task.default_config
    bad = store.save("crowd", model, config={**task.default_config, "tile": "whole"}, metrics={}, data_fingerprint="x")
    with pytest.raises(FacelabError, match=f"run '{bad}'.*task 'crowd' config: unknown key 'tile' "
                                           r"\(did you mean 'tiles'\?\)"):
        store.load("crowd", bad, check_config=task.config)


def test_yolo_config_keys_are_ultralytics_training_arguments(tmp_path):
    from facelab.yolo.train import FACELAB_KEYS, train_args
    from ultralytics.cfg import DEFAULT_CFG_DICT

    for model in (YoloDetectConfig, YoloClassifyConfig):
        assert set(model.model_fields) - FACELAB_KEYS <= set(DEFAULT_CFG_DICT)
    args = train_args(get_task("mask").default_config, "detect", tmp_path, tmp_path)
    assert args["mosaic"] == 1.0 and "merge_val" not in args and args["model"] == "yolov8n.yaml"
    for wrong in ({"mosaik": 1.0}, {"save_dir": "elsewhere"}):  # never dropped without a word
        with pytest.raises(FacelabError, match=next(iter(wrong))):
            train_args({**get_task("mask").default_config, **wrong}, "detect", tmp_path, tmp_path)
