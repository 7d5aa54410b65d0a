"""A submission job killed with SIGKILL (its driver and the local Ray it started) leaves the old
submission file as it was (outputs are written to a temporary name and renamed), and a rerun
finishes and writes the whole submission (issue 20: "a killed job leaves either the old file or
the new one; a rerun after a kill finishes")."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pandas as pd
import pytest

from killed_jobs import facelab, kill_group, ray_tmp  # noqa: F401 - ray_tmp is a fixture

OLD = "ID,label\nthe previous submission,positive\n"


def run(args: list[str], ray_tmp) -> dict:
    """A whole `facelab` command with a Ray of its own (no Ray in the test process: the cluster
    tests beside this one start their own); its JSON summary."""
    proc = facelab(args, ray_tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        kill_group(proc, ray_tmp)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout)


@pytest.mark.slow
def test_a_killed_submit_leaves_the_old_file_and_a_rerun_finishes(tmp_path, ray_tmp):
    from facelab.formats import get_format

    data = get_format("sentiment").synthesize(tmp_path / "data", n=300, seed=2)
    store = str(tmp_path / "store")
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"ensemble_folds": 2, "cv_folds": 2}))
    run(["train", "--task", "sentiment", "--data", str(data), "--store", store, "--config", str(config), "--promote"],
        ray_tmp)
    for session in ray_tmp.iterdir():  # the kill below waits for the submit job's own Ray session
        session.unlink() if session.is_symlink() else shutil.rmtree(session, ignore_errors=True)
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    out.write_text(OLD)

    proc = facelab(["submit", "--task", "sentiment", "--data", str(data), "--store", store, "--out", str(out)],
                   ray_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill once the job's own Ray is up: the job is under way, its submission not yet written
        deadline = time.monotonic() + 120
        while not list(ray_tmp.glob("session_*/logs")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        finished_first = proc.poll() is not None
    finally:
        kill_group(proc, ray_tmp)

    expected = len(pd.read_csv(data / "test.csv"))
    if not finished_first:
        assert out.read_text() == OLD, "a killed job changed the submission"
    else:  # the job beat the kill: then its file is whole
        assert len(pd.read_csv(out)) == expected
    others = [p.name for p in out.parent.iterdir() if p.name != "submission.csv" and not p.name.startswith(".")]
    assert not others, f"a leftover file under a name a reader would take: {others}"

    # the rerun finishes over whatever the kill left
    summary = run(["submit", "--task", "sentiment", "--data", str(data), "--store", store, "--out", str(out)], ray_tmp)
    frame = pd.read_csv(out)
    assert summary["rows"] == len(frame) == expected and out.read_text() != OLD
