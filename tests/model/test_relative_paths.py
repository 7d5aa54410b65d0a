"""Paths as a user gives them: `train`, `tune`, `submit` and `score` of every registered task with
relative `--data`, `--out`, `--config`, `--store`, `--submission` and `--truth`, run from a working
directory that is not the one the session's Ray workers started in. Tune trials, Train workers and
the Ray Data predictor actors do not share the driver's working directory, so a path the driver
does not resolve fails there (it did: `facelab tune --task detect --data rel_detect` failed in
every trial with FileNotFoundError 'rel_detect/val/images/synth000.png').

Each task runs once, as cheaply as it can: its demo data, its tiny demo config, a 1-trial sweep
(the config held fixed), which stores and promotes its run, then a submission and its score. For
the estimator tasks that sweep refits through the task's fit, as `train` does; a sweep of a task
tuned per epoch adopts its trial's checkpoint instead (its trial runs the same Ray Train workers),
so `train` itself runs for the first such task only, to keep the file cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from facelab.errors import RealDataMissing
from facelab.tasks import get_task, task_names
from jobs.cli import app
from jobs.demo import SWEPT

runner = CliRunner()


def _invoke(*args: str) -> dict:
    """Run a facelab command; its stdout must be exactly one JSON object (what `| jq` reads)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"facelab {' '.join(args)} exited {result.exit_code}:\n{result.output[-3000:]}"
    return json.loads(result.stdout)


# The first task whose sweep adopts its trial's own checkpoint instead of refitting with `fit`.
TRAINED_TOO = next((name for name in task_names() if get_task(name).reports_per_epoch), None)


def test_commands_hand_on_absolute_paths(tmp_path, monkeypatch):
    """What the commands pass to the library (no Ray): every relative path resolved against the
    working directory it was typed in, a local store too; a filesystem URI is left alone."""
    import facelab.cluster
    import facelab.predict
    import facelab.train
    import jobs.tune

    calls = {}
    # the commands import the library when they run: patch it where they find it
    monkeypatch.setattr(facelab.cluster, "connect", lambda address, **kw: None)
    monkeypatch.setattr(jobs.tune, "connect", lambda address: None)
    monkeypatch.setattr(facelab.train, "train", lambda task, data, store, **kw: calls.setdefault("train", (data, store)) and ("r1", {}))
    monkeypatch.setattr(jobs.tune, "sweep", lambda task, data, store, **kw: calls.setdefault("tune", (data, store)) and {})
    monkeypatch.setattr(facelab.predict, "submit",
                        lambda task, data, out, store, **kw: calls.setdefault("submit", (data, out, store)) and {})
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text("{}\n")
    _invoke("train", "--task", "sentiment", "--data", "d", "--store", "s", "--config", "c.yaml")
    _invoke("tune", "--task", "sentiment", "--data", "../d", "--store", "~/s", "--config", "./c.yaml")
    _invoke("submit", "--task", "sentiment", "--data", "d", "--out", "sub/x.csv", "--store", "s3://bucket/store")
    assert calls["train"] == (tmp_path / "d", str(tmp_path / "s"))
    assert calls["tune"] == (tmp_path.parent / "d", str(Path.home() / "s"))
    assert calls["submit"] == (tmp_path / "d", tmp_path / "sub" / "x.csv", "s3://bucket/store")


def test_library_entry_points_resolve_what_they_are_given(tmp_path, monkeypatch):
    from facelab.store import ModelStore

    monkeypatch.chdir(tmp_path)
    assert ModelStore("store").uri == str(tmp_path / "store")  # what Serve replicas and workers are handed


@pytest.mark.parametrize("name", task_names())
def test_train_tune_submit_score_with_relative_paths(name, ray_local, tmp_path, monkeypatch):
    """The commands (`tune`, `score`) and the library (`train`, `submit`) from a working directory
    of their own, with relative paths only."""
    from facelab.predict import submit
    from facelab.train import train

    task = get_task(name)
    monkeypatch.chdir(tmp_path)
    try:
        data = Path(task.demo_data(Path("data")))
    except RealDataMissing as exc:
        pytest.skip(f"{name} needs real data: {exc}")
    data = data.relative_to(tmp_path) if data.is_absolute() else data
    config = SWEPT.get(name) or dict(task.demo_config)  # what the demo fits with: each task's cheapest config
    Path("config.yaml").write_text(yaml.safe_dump(config))

    tuned = _invoke("tune", "--task", name, "--data", str(data), "--store", "store", "--config", "config.yaml",
                    "--samples", "1")
    assert tuned["task"] == name and tuned["trials"] == 1 and tuned["promoted"]
    assert (tmp_path / "store" / name / "runs" / tuned["run_id"] / "run.json").is_file()
    if name == TRAINED_TOO:  # the sweep adopted its trial's checkpoint: `train` goes through the task's fit
        run_id, _ = train(name, data, "store", config=config)
        assert (tmp_path / "store" / name / "runs" / run_id / "run.json").is_file()

    submission = Path("out") / task.format.submission_name
    written = submit(name, data, submission, "store")
    assert written["run_id"] == tuned["run_id"] and written["rows"] > 0
    written_to = Path(written["submission"])  # the out path, or the folder inside it a layout writes (deblur)
    assert written_to.exists() and (written_to == tmp_path / submission or tmp_path / submission in written_to.parents)

    scores = _invoke("score", "--task", name, "--submission", str(written_to.relative_to(tmp_path)),
                     "--truth", str(data / task.format.synthetic_truth))
    assert scores["task"] == name
    assert any(isinstance(v, (int, float)) for k, v in scores.items() if k != "task")
