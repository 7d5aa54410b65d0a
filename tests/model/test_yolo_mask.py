"""The mask task end to end on synthetic data, CI-sized (two n models, 64 px, 2 epochs, 12 images):
`facelab tune` interrupted with Ctrl+C after its first checkpoint, `facelab tune --resume` goes on
from that checkpoint and promotes the best trial's own weights, `submit` writes the Blitz layout,
`score` reads it back, and the Serve rows and answers have the documented shape.

A detector trained from scratch for 2 epochs on 12 images finds nothing useful, so these tests
check the machinery (trials, checkpoints, resume, promotion, layouts, answers), not accuracy;
learning is checked by the age-bins tests and measured by the real-data jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.formats.mask import MASK_TYPES, parse_bbox
from facelab.store import ModelStore
from facelab.uploads import UploadError

TINY = {"model": "yolov8n", "imgsz": 64, "epochs": 2, "batch": 4, "plots": False, "mosaic": 0.0}


@pytest.fixture(scope="module")
def mask_data(tmp_path_factory):
    return get_format("mask").synthesize(tmp_path_factory.mktemp("mask-data"), n=12, seed=5)


def _interrupted_sweep(data: Path, store: str, config: Path) -> tuple[str, str, set[str]]:
    """`facelab tune` in a subprocess, stopped with SIGINT once a trial has saved a checkpoint;
    returns its stderr, the sweep folder and the names of the trials that had a checkpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.tune", "--task", "mask", "--data", str(data), "--samples", "2",
         "--config", str(config), "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"})
    try:
        deadline = time.monotonic() + 600
        while not list(Path(store).glob("mask/sweeps/*/trial_*/checkpoint_*/last.pt")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(1)
        checkpointed = {p.parents[1].name for p in Path(store).glob("mask/sweeps/*/trial_*/checkpoint_*/last.pt")}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err, str(next(Path(store).glob("mask/sweeps/*"))), checkpointed


@pytest.fixture(scope="module")
def resumed_sweep(mask_data, tmp_path_factory, ray_local):
    """An interrupted 2-trial sweep, then resumed to its end in this session's Ray."""
    import yaml

    from tuning.runner import resume

    root = tmp_path_factory.mktemp("mask-sweep")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    store = str(root / "store")
    err, sweep_path, checkpointed = _interrupted_sweep(mask_data, store, config)
    return store, sweep_path, err, resume(sweep_path, store), checkpointed


def test_interrupted_sweep_is_not_promoted_and_says_how_to_resume(resumed_sweep):
    store, sweep_path, err, _, _ = resumed_sweep
    assert "sweep interrupted" in err and f"--resume {sweep_path}" in err


def test_resume_goes_on_from_the_checkpoint_and_promotes_the_best_trial(resumed_sweep):
    store, sweep_path, _, summary, checkpointed = resumed_sweep
    from ray import tune

    from facelab.yolo.trial import trial

    results = tune.Tuner.restore(sweep_path, trainable=trial).get_results()  # read only
    assert len(results) == 2 and results.num_errors == 0
    assert {r.config["model"] for r in results} <= {"yolov5n", "yolov8n", "yolo11n"}
    assert checkpointed <= {Path(r.path).name for r in results}
    for result in results:
        # Tune replays the result in flight at the interrupt (at least once), so the epoch being
        # reported then may show twice; a trial that had a checkpoint must not redo epoch 1.
        epochs = list(result.metrics_dataframe["epoch"])
        assert epochs == sorted(epochs) and set(epochs) == {1, 2} and len(epochs) <= 3, epochs
        if Path(result.path).name in checkpointed:
            assert epochs.count(1) == 1, f"{result.path} started over: {epochs}"
        trial_dir = Path(result.path)
        assert list(trial_dir.glob("checkpoint_*/last.pt")) and (trial_dir / "yolo" / "results.csv").is_file()
    store_ = ModelStore(store)
    assert summary["promoted"] and store_.promoted("mask") == summary["run_id"]
    run = store_.load("mask")
    files = {p.name for p in run.model_dir.iterdir()}
    assert {"model.pt", "config.json", "history.csv", "history.png", "tune_results.csv"} <= files
    assert run.config["model"] == summary["best_config"]["model"] and run.config["imgsz"] == 64
    assert {"ap50", "type_accuracy", "map50"} <= set(run.metrics)


def test_submission_has_one_valid_box_per_test_image(resumed_sweep, mask_data, tmp_path, checked_mask_submission):
    scores = checked_mask_submission("mask", mask_data, resumed_sweep[0], tmp_path / "submission.csv")
    assert 0.0 <= scores["ap50"] <= 1.0 and 0.0 <= scores["type_accuracy"] <= 1.0


def test_serve_rows_and_answers(resumed_sweep, mask_data):
    from facelab.tasks import get_task

    task = get_task("mask")
    good, bad = task.demo_requests(mask_data)
    rows, batched = task.request_rows(task.Request.model_validate(good))
    assert not batched and rows[0]["image"].shape == (512, 512, 3)
    with pytest.raises(UploadError) as info:
        task.request_rows(task.Request.model_validate(bad))
    assert info.value.status in (415, 422)
    with pytest.raises(ValueError):  # neither or both of image / images
        task.Request.model_validate({"image": good["image"], "images": [good["image"]]})
    predictor = task.predictor_class(str(ModelStore(resumed_sweep[0]).load("mask").model_dir))
    image = rows[0]["image"]
    column = np.empty(2, dtype=object)
    column[:] = [image, image[:300, :400]]  # Serve batches images of different sizes as objects
    out = predictor({"image": column})
    answers = task.response([{k: v[i] for k, v in out.items()} for i in range(2)], batched=True)["predictions"]
    assert answers[0]["masktype"] in MASK_TYPES and 0.0 <= answers[0]["confidence"] <= 1.0
    x0, y0, x1, y1 = answers[1]["bbox"]
    assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300  # in the image's own pixels
    assert parse_bbox(answers[0]["bbox_text"]) == pytest.approx(answers[0]["bbox"], abs=1)


def test_resume_of_a_folder_that_is_no_sweep(tmp_path, ray_local):
    from tuning.runner import resume

    with pytest.raises(FacelabError, match="not a facelab sweep"):
        resume(str(tmp_path), str(tmp_path / "store"))
