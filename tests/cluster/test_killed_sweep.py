"""A sweep whose driver is SIGKILLed (with the local Ray it started) resumes with `facelab tune
--resume` without running a finished trial or a finished epoch again (issue 20 part 4). In `make
test-cluster` with the other tests that start and kill their own Ray."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from killed_jobs import facelab, kill_group, ray_tmp  # noqa: F401 - ray_tmp is a fixture

EPOCHS = 6


# --- SIGKILL and resume -----------------------------------------------------------------------

def _epochs(sweep: Path) -> dict[str, list[int]]:
    """Each trial's reported epochs, in report order, from the result files Tune writes."""
    out = {}
    for result in sweep.glob("trial_*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        out[result.parent.name] = [int(r["epoch"]) for r in lines if "epoch" in r]
    return out


def _lines(sweep: Path) -> dict[str, list[str]]:
    """Each trial's result lines as written (a rerun epoch differs from the first run in its timestamps)."""
    return {r.parent.name: [line for line in r.read_text().splitlines() if line.strip()]
            for r in sweep.glob("trial_*/result.json")}


def _snapshot(sweep: Path) -> dict[str, bytes]:
    """The result file of every trial and the checkpoint folders of every Train run."""
    files = {p.relative_to(sweep).as_posix(): p.read_bytes() for p in sweep.glob("trial_*/result.json")}
    files.update({p.relative_to(sweep).as_posix(): b"" for p in sweep.glob("train-*/checkpoint_*")})
    return files


@pytest.mark.slow
def test_sigkilled_sweep_resumes_without_redoing_trials_or_epochs(tmp_path, ray_tmp):
    from facelab.formats import get_format

    data = get_format("tracks").synthesize(tmp_path / "data", n=12, seed=0)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"epochs": EPOCHS}))
    store = tmp_path / "store"
    log = open(tmp_path / "tune.log", "w")
    proc = facelab(["tune", "--task", "tracks", "--data", str(data), "--samples", "3", "--max-concurrent", "1",
                     "--config", str(config), "--store", str(store)], ray_tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        # kill once a trial has finished and the next has reported an epoch
        deadline = time.monotonic() + 480
        while True:
            assert proc.poll() is None, (tmp_path / "tune.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no finished trial within 8 minutes"
            sweeps = list(store.glob("tracks/sweeps/*"))
            epochs = _epochs(sweeps[0]) if sweeps else {}
            done = [t for t, e in epochs.items() if e and e[-1] == EPOCHS]
            if done and any(e and t not in done for t, e in epochs.items()):
                break
            time.sleep(0.2)
    finally:
        kill_group(proc, ray_tmp)
        log.close()
    sweep = sweeps[0]
    before, lines_before, files_before = _epochs(sweep), _lines(sweep), _snapshot(sweep)
    assert not (store / "tracks" / "promoted.json").exists()

    with open(tmp_path / "resume.log", "w") as out:
        resumed = facelab(["tune", "--resume", str(sweep), "--store", str(store)], ray_tmp,
                           stdout=subprocess.PIPE, stderr=out)
        try:
            stdout, _ = resumed.communicate(timeout=600)
        finally:
            kill_group(resumed, ray_tmp)
    assert resumed.returncode == 0, (tmp_path / "resume.log").read_text()[-3000:]
    summary = json.loads(stdout)
    assert summary["trials"] == 3 and summary["failed_trials"] == [] and summary["promoted"]
    # the resumed sweep stores and promotes a trial's model, with every trial's result beside it
    from facelab.store import ModelStore

    run = ModelStore(str(store)).load("tracks")
    trials = pd.read_csv(run.model_dir / "tune_results.csv")
    assert len(trials) == 3 and trials["val_tpr@fpr=1e-05"].notna().all()
    assert {"model.pt", "val_roc.png"} <= {p.name for p in run.model_dir.iterdir()}

    after, lines_after = _epochs(sweep), _lines(sweep)
    assert len(after) == 3
    for trial, epochs in after.items():
        assert epochs == sorted(set(epochs)), f"{trial} ran an epoch twice: {epochs}"
        if before.get(trial):
            # either Tune restored the trial and appended to what it reported before the kill (the
            # same lines, byte for byte: not rerun), or, when the kill came before Tune saved the
            # trial's state, Tune restarted the trial with a fresh result file, and the Train run
            # inside resumed from its own checkpoint: then no epoch reported before the kill ran again
            kept = lines_after[trial][:len(lines_before[trial])] == lines_before[trial]
            assert kept or epochs[0] > before[trial][-1], (trial, before[trial], epochs)
    for trial, epochs in before.items():
        if epochs and epochs[-1] == EPOCHS:  # finished before the kill: not run again at all
            name = f"{trial}/result.json"
            assert _snapshot(sweep)[name] == files_before[name], f"{trial} ran again after the resume"
            run = trial.split("_")[1]
            assert {p for p in _snapshot(sweep) if p.startswith(f"train-{run}/")} == \
                {p for p in files_before if p.startswith(f"train-{run}/")}, f"train-{run} wrote new checkpoints"
