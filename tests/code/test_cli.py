"""The CLI: typed commands, `python -m jobs.<name>` twins, one-line errors with non-zero exit."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from jobs.cli import app

runner = CliRunner()


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "train", "tune", "promote", "runs", "submit", "score", "serve", "demo"):
        assert name in result.output


@pytest.mark.parametrize("module", ["train", "tune", "promote", "submit", "score", "serve", "demo", "data"])
def test_jobs_run_as_modules(module):
    proc = subprocess.run([sys.executable, "-m", f"jobs.{module}", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout


def test_unknown_task_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["score", "--task", "nope", "--submission", str(tmp_path), "--truth", str(tmp_path)])
    assert result.exit_code == 2
    assert "'nope' is not one of" in result.output


def test_task_is_a_choice_of_the_registered_names(tmp_path):
    from facelab.tasks import task_names

    result = runner.invoke(app, ["train", "--task", "sentimnet", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "sentimnet" in result.output and all(name in result.output for name in task_names()[:3])


def test_missing_submission_names_the_file(tmp_path):
    result = runner.invoke(app, ["score", "--task", "sentiment", "--submission", str(tmp_path / "sub.csv"),
                                 "--truth", str(tmp_path / "truth.csv")])
    assert result.exit_code == 2
    assert "sub.csv" in result.output


def test_bad_config_file_is_reported(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("- not\n- a mapping\n")
    result = runner.invoke(app, ["train", "--task", "sentiment", "--data", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 2


def test_runs_lists_stored_runs_and_the_winner(tmp_path):
    import json

    from facelab.store import ModelStore

    store = ModelStore(str(tmp_path / "store"))
    model = tmp_path / "m"
    model.mkdir()
    (model / "w").write_text("x")
    assert json.loads(runner.invoke(app, ["runs", "--task", "sentiment", "--store", store.uri]).output) == {
        "task": "sentiment", "promoted": None, "runs": [], "unreadable": []}
    run_id = store.save("sentiment", model, config={"model": "svc"}, metrics={"f1": 0.5}, data_fingerprint="d")
    assert runner.invoke(app, ["promote", "--task", "sentiment", "--run", run_id, "--store", store.uri]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["runs", "--task", "sentiment", "--store", store.uri]).output)
    assert listed["promoted"] == run_id and listed["runs"][0]["metrics"] == {"f1": 0.5}
