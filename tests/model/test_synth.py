"""Synth (HexaFace DCGAN): trains through the shared mechanism with two optimizers, its samples move
towards the real faces' statistics, and submit, `facelab synth`, the measure and the Serve path
all give the same face for the same seed."""

import io
import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from facelab.formats import get_format
from facelab.formats.synth import read_samples
from facelab.formats.utkface import labels_table, split_names
from facelab.predict import submit
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.synth_measure import GenderHead, gender_shares, wilson
from facelab.tasks.synth import RECIPE, thumbnails
from facelab.torch_train import Optimizers, load_model
from facelab.uploads import Binary


@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared synth fit (fit_cases.py: drawn faces in the UTKFace layout)."""
    return task_fit("synth")


@pytest.fixture(scope="module")
def faces(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def trained(fit):
    return fit.store, fit.run, fit.metrics


def heldout_count(faces):
    return int((split_names(labels_table(faces).column("file").to_pylist()) == "val").sum())


def test_samples_move_towards_the_real_faces(trained, faces):
    _, run, metrics = trained
    history = pd.read_csv(run.model_dir / "history.csv")
    assert list(history.epoch) == list(range(1, 11))
    assert {"train_loss", "d_loss", "d_real", "d_fake", "face_rate", "fd_pixels"} <= set(history.columns)
    assert history.d_real.iloc[-1] > history.d_fake.iloc[-1]  # the discriminator tells them apart
    # the same score for an untrained generator: a trained one is clearly closer to the real faces
    config = json.loads((run.model_dir / "config.json").read_text())
    val = get_format("synth").read(faces, "val").dataset.to_pandas()
    batch = {k: torch.from_numpy(v) for k, v in RECIPE.prepare({"path": val.path.to_numpy()}, config, False).items()}
    untrained = RECIPE.build_model(config).eval()
    with torch.no_grad():
        before = RECIPE.evaluate(untrained, [batch], config)["fd_pixels"]
    assert history.fd_pixels.min() < 0.9 * before
    assert metrics["female_share_train_labels"] == pytest.approx(
        pd.read_csv(faces / "labels.csv").pipe(lambda f: f[split_names(f.file.tolist()) != "val"]).gender.mean())
    assert Image.open(run.model_dir / "grid.png").size == (8 * 66 + 2, 8 * 66 + 2)


def test_submit_writes_one_sample_per_heldout_face_and_scores(trained, faces, tmp_path, monkeypatch, ray_local):
    store, _, _ = trained
    monkeypatch.setenv("FACELAB_STORE", store)  # the measure looks for an age-gender model here: none
    result = submit("synth", faces, tmp_path / "samples", store)
    files, images = read_samples(tmp_path / "samples")
    assert result["rows"] == len(files) == heldout_count(faces)
    assert files[0] == "sample_000000.png" and images[0].shape == (64, 64, 3)
    assert (tmp_path / "samples" / "grid.png").is_file()
    scores = get_format("synth").score(tmp_path / "samples", faces / "test_truth.csv")
    assert scores["n_samples"] == len(files) and scores["n_real"] == heldout_count(faces)
    assert all(0.0 <= scores[k] <= 1.0 for k in ("face_rate_hog", "face_rate_mediapipe", "real_face_rate_hog",
                                                 "real_face_rate_mediapipe", "female_share_train_labels"))
    assert "female_share_samples" not in scores  # no gender head in this store
    assert get_format("synth").plots(tmp_path / "samples", faces, tmp_path / "plots")[0].is_file()


def test_cli_serve_and_submit_give_one_face_per_seed(trained, faces, tmp_path, ray_local):
    from jobs.cli import app

    store, run, _ = trained
    out = tmp_path / "cli"
    answer = CliRunner().invoke(app, ["synth", "--n", "5", "--seed", "3", "--out", str(out), "--store", store,
                                      "--measure", "--data", str(faces)])
    assert answer.exit_code == 0, answer.output
    result = json.loads(answer.stdout)
    assert result["samples"] == 5 and result["gender"].startswith("pending: no promoted age-gender model")
    assert 0.0 <= result["face_rate_hog"] <= 1.0 and (out / "measure.json").is_file() and (out / "grid.png").is_file()
    task = get_task("synth")
    predictor = task.predictor_class(str(run.model_dir))
    rows, batched = task.request_rows(task.Request.model_validate({"n": 1, "seed": 4}))
    single = task.response([{k: v[0] for k, v in predictor({k: np.array([v]) for k, v in rows[0].items()}).items()}],
                           batched)
    assert isinstance(single, Binary) and single.media_type == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(single.data)).convert("RGB")),
                          np.asarray(Image.open(out / "sample_000004.png").convert("RGB")))
    rows, _ = task.request_rows(task.Request.model_validate({"n": 4, "seed": 3}))
    grid = predictor({k: np.array([v]) for k, v in rows[0].items()})["png"][0]
    assert Image.open(io.BytesIO(grid)).size == (4 * 66 + 2, 68)
    for bad in ({"n": 0}, {"n": 65}, {"seed": -1}, {"n": 2, "size": 128}):
        with pytest.raises(Exception):
            task.Request.model_validate(bad)


def test_gender_shares_by_the_head(monkeypatch):
    """With a gender head (here a stand-in: bright faces are 'women'), shares, interval and gap; the
    head is the promoted age-gender model's predictor, looked up by the synth job."""
    from jobs.synth import gender_head

    class Head:
        def __init__(self, model_dir):
            pass

        def __call__(self, batch):
            return {"gender": (batch["image"].mean(axis=(1, 2, 3)) > 127).astype(int)}

    monkeypatch.setattr(ModelStore, "load", lambda self, task, run_id=None, **kw: types.SimpleNamespace(
        run_id="r1", model_dir="unused"))
    monkeypatch.setattr("jobs.synth.get_task", lambda name: types.SimpleNamespace(predictor_class=Head,
                                                                                config=lambda c, **kw: c))
    head = gender_head("unused")
    assert isinstance(head, GenderHead) and head.run_id == "r1"
    bright, dark = np.full((64, 64, 3), 200, np.uint8), np.full((64, 64, 3), 50, np.uint8)
    out = gender_shares([bright] * 3 + [dark], [bright, dark], head)
    assert out["female_share_samples"] == 0.75 and out["female_share_real"] == 0.5
    assert out["female_share_gap"] == 0.25 and out["gender_head_run"] == "r1"
    assert out["female_share_samples_ci95_low"] < 0.75 < out["female_share_samples_ci95_high"]
    assert gender_shares([bright], [dark], None) == {"gender": "pending: no gender head given"}
    assert wilson(0.5, 100) == pytest.approx((0.404, 0.596), abs=1e-3)


def test_two_optimizers_checkpoint_as_one():
    model = RECIPE.build_model({**get_task("synth").default_config, "g_width": 4, "d_width": 4})
    optimizers = RECIPE.optimizer(model, get_task("synth").default_config)
    assert isinstance(optimizers, Optimizers) and len(optimizers.param_groups) == 2
    model(torch.randn(2, 100, 1, 1)).sum().backward()
    optimizers["generator"].step()
    state = optimizers.state_dict()
    again = RECIPE.optimizer(model, get_task("synth").default_config)
    again.load_state_dict(state)
    assert again["generator"].state_dict()["state"].keys() == state["generator"]["state"].keys() != set()
    assert again["discriminator"].state_dict()["state"] == {}


def test_thumbnails_take_either_layout():
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(thumbnails(images), thumbnails(images.transpose(0, 3, 1, 2)))


def test_load_model_rebuilds_the_generator(trained):
    _, run, _ = trained
    model = load_model(RECIPE, run.model_dir, "cpu")
    assert model.generator(torch.zeros(1, 100, 1, 1)).shape == (1, 3, 64, 64)
