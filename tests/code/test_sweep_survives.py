"""Sweeps that survive (issue 20 part 4).

- A failing trial is retried from its latest checkpoint (Tune's FailureConfig, which `sweep` puts
  in every sweep's RunConfig), and a trial that still fails is listed with a one-line reason
  (`failed_trials`, the `error` column of the stored tune_results.csv), while the sweep goes on.
- Checkpoints that would run code when loaded are refused.
The SIGKILLed sweep that resumes is tests/cluster/test_killed_sweep.py (`make test-cluster`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from facelab.store import ModelStore
from facelab.tasks import get_task
from tuning.runner import failed_trials, one_line, results_table


def test_failed_trials_are_retried_from_their_checkpoint_then_listed(ray_local, tmp_path):
    from ray import tune

    # defined here so that Ray pickles it by value (workers cannot import a test module)
    def _flaky(config):
        """3 epochs, a checkpoint each; "flaky" fails once after its first epoch, "broken" always."""
        import tempfile

        from ray import tune

        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                start = json.loads((Path(folder) / "state.json").read_text())["epoch"]
        for epoch in range(start + 1, 4):
            if config["kind"] == "broken":
                raise ValueError("broken on purpose\n(a second line of detail)")
            marker = Path(config["marker"])
            if config["kind"] == "flaky" and epoch == 2 and not marker.exists():
                marker.write_text("failed once")
                raise RuntimeError("a transient failure")
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
                tune.report({"epoch": epoch, "score": float(epoch)}, checkpoint=tune.Checkpoint.from_directory(folder))

    tuner = tune.Tuner(
        _flaky,
        param_space={"kind": tune.grid_search(["ok", "flaky", "broken"]), "marker": str(tmp_path / "marker")},
        run_config=tune.RunConfig(name="flaky", storage_path=str(tmp_path / "sweeps"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2)),
    )
    results = tuner.fit()
    by_kind = {r.config["kind"]: r for r in results}
    assert by_kind["ok"].error is None and by_kind["flaky"].error is None
    # the flaky trial resumed after its failure from epoch 1's checkpoint: epoch 1 ran once
    epochs = [json.loads(line)["epoch"] for line in Path(by_kind["flaky"].path, "result.json").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    failed = failed_trials(results)
    assert [f["config"]["kind"] for f in failed] == ["broken"]
    assert failed[0]["error"].startswith("ValueError: broken on purpose") and "\n" not in failed[0]["error"]
    table = results_table(results.get_dataframe(), failed)
    assert dict(zip(table["trial_id"], table["error"]))[failed[0]["trial_id"]] == failed[0]["error"]
    assert (table["error"] == "").sum() == 2

    # `facelab tune --resume` (resume_errored=False unless --retry-failed): the failed trial stays
    # failed and is not run again, the finished ones are kept
    broken_results = Path(by_kind["broken"].path, "result.json").read_text()
    again = tune.Tuner.restore(str(tmp_path / "sweeps" / "flaky"), trainable=_flaky, resume_unfinished=True,
                               resume_errored=False).fit()
    assert [(f["trial_id"], f["error"]) for f in failed_trials(again)] == [(failed[0]["trial_id"], failed[0]["error"])]
    assert Path(by_kind["broken"].path, "result.json").read_text() == broken_results


def test_resume_keeps_failed_trials_failed_unless_asked(monkeypatch):
    """The runner's wiring of --retry-failed into Tuner.restore, and the CLI's check."""
    from ray import tune
    from typer.testing import CliRunner

    from jobs.cli import app
    from tuning import runner

    seen = {}

    class Stop(Exception):
        pass

    def restore(path, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(runner, "load_fit_data", lambda *a, **k: {})
    monkeypatch.setattr(runner, "get_task", lambda name: type("T", (), {"trial_data": lambda self, d: d})())
    monkeypatch.setattr(runner, "trainable", lambda *a: None)
    monkeypatch.setattr(runner, "_backbone", lambda *a: (None, None))
    monkeypatch.setattr(runner.ModelStore, "read_sweep", lambda self, path: {"task": "x", "data": "."})
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))
    monkeypatch.setattr(tune.Tuner, "restore", staticmethod(restore))
    for retry in (False, True):
        with pytest.raises(Stop):
            runner.resume("/tmp/sweep", "/tmp/store", retry_failed=retry)
        assert seen["resume_unfinished"] is True and seen["resume_errored"] is retry
    result = CliRunner().invoke(app, ["tune", "--task", "sentiment", "--data", ".", "--retry-failed"])
    assert result.exit_code == 2 and "--retry-failed goes with --resume" in result.output


def test_no_early_stop_runs_every_trial_to_its_end(monkeypatch, tmp_path):
    """ASHA stops weak trials of a task that reports every epoch; --no-early-stop builds the sweep
    without a scheduler (and records it); with --resume the flag is an error, not ignored."""
    from ray import tune
    from typer.testing import CliRunner

    from jobs.cli import app
    from tuning import runner

    class Stop(Exception):
        pass

    seen = []

    def tuner(trainable, *, tune_config, run_config):
        seen.append(tune_config.scheduler)
        raise Stop

    task = get_task("tracks")
    monkeypatch.setattr(runner, "load_fit_data", lambda *a, **k: {})
    monkeypatch.setattr(type(task), "trial_data", lambda self, data: data)
    monkeypatch.setattr(runner, "trainable", lambda *a: None)
    monkeypatch.setattr(tune, "Tuner", tuner)
    for early_stop in (True, False):
        with pytest.raises(Stop):
            runner.sweep("tracks", tmp_path, str(tmp_path / f"store-{early_stop}"), samples=2, max_concurrent=1,
                         early_stop=early_stop)
        saved, = (tmp_path / f"store-{early_stop}").rglob(ModelStore.SWEEP_FILE)
        assert json.loads(saved.read_text())["early_stop"] is early_stop
    assert type(seen[0]).__name__ == "AsyncHyperBandScheduler" and seen[1] is None
    result = CliRunner().invoke(app, ["tune", "--resume", str(tmp_path), "--no-early-stop"])
    assert result.exit_code == 2 and "is for a new sweep" in result.output


def test_one_line():
    assert one_line(RuntimeError("x\n  File 'a.py'\nValueError: bad row\n")) == "ValueError: bad row"
    assert one_line(KeyError("k")) == "KeyError: 'k'"
    assert len(one_line("y" * 1000)) == 300


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this pickle runs code",))


def test_checkpoints_that_would_run_code_are_refused(tmp_path):
    """Train checkpoints load with weights_only=True; an ultralytics checkpoint through ultralytics'
    safe load (facelab.yolo.export.load_checkpoint): a pickle that calls code is refused by both."""
    import pickle

    import torch

    from facelab.errors import FacelabError
    from facelab.yolo.export import load_checkpoint

    path = tmp_path / "last.pt"
    torch.save({"model": _RunsCode(), "epoch": 1}, path)
    with pytest.raises(FacelabError, match="last.pt: not a safely loadable ultralytics checkpoint"):
        load_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)  # what facelab.torch_train uses
    assert os.environ.get("ULTRALYTICS_SAFE_LOAD") == "1"  # set by facelab.yolo.offline for YOLO() itself
