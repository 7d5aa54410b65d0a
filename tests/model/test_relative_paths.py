"""Paths as a user gives them: the commands hand the library absolute paths, whatever the user
typed, because Tune trials, Train workers and Ray Data predictor actors do not share the driver's
working directory (it failed: `facelab tune --task detect --data rel_detect` raised
FileNotFoundError 'rel_detect/val/images/synth000.png' in every trial). The lifecycle of every
task with relative paths from a working directory of its own (tune, submit, score) runs in
tests/model/test_task_contract.py, beside the contract checks, so each task fits once."""

from __future__ import annotations

from pathlib import Path


def test_commands_hand_on_absolute_paths(tmp_path, monkeypatch, facelab_cli):
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
    facelab_cli("train", "--task", "sentiment", "--data", "d", "--store", "s", "--config", "c.yaml")
    facelab_cli("tune", "--task", "sentiment", "--data", "../d", "--store", "~/s", "--config", "./c.yaml")
    facelab_cli("submit", "--task", "sentiment", "--data", "d", "--out", "sub/x.csv", "--store", "s3://bucket/store")
    assert calls["train"] == (tmp_path / "d", str(tmp_path / "s"))
    assert calls["tune"] == (tmp_path.parent / "d", str(Path.home() / "s"))
    assert calls["submit"] == (tmp_path / "d", tmp_path / "sub" / "x.csv", "s3://bucket/store")


def test_library_entry_points_resolve_what_they_are_given(tmp_path, monkeypatch):
    from facelab.store import ModelStore

    monkeypatch.chdir(tmp_path)
    assert ModelStore("store").uri == str(tmp_path / "store")  # what Serve replicas and workers are handed
