"""Occlusion (seed 001) end to end on an easy signal: the colour/grey ensemble trains through Ray
Train, beats predicting the mean, writes and scores a submission, and answers Serve-shaped requests."""

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from facelab.formats import get_format
from facelab.formats.occlusion import FILES, IMAGES
from facelab.metrics import fairness_score
from facelab.tasks import get_task
from facelab.tasks.occlusion import LEVELS, level_weights, levels
from facelab.uploads import UploadError

TINY = {"epochs": 4, "image_size": 32, "width": 8, "batch_size": 16, "lr": 3e-3, "warmup_epochs": 0}


def _easy_image(rng: np.random.Generator, fraction: float, grey: bool) -> Image.Image:
    """A bright picture whose top 2 x fraction is covered by a dark band."""
    colour = rng.integers(140, 255, 3)
    pixels = np.empty((64, 64, 3), np.uint8)
    pixels[:] = colour.mean() if grey else colour
    pixels[: int(round(2 * fraction * 64))] = rng.integers(0, 40)
    return Image.fromarray(pixels)


def easy_data(root, n_train: int = 320, n_test: int = 60, seed: int = 0):
    """The challenge layout with an easy target; a third of the images grey (database2/), so the
    grey model of the ensemble has enough to learn from."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            fraction, grey = float(rng.uniform(0, 0.5)), i % 3 == 0
            name = f"database{2 if grey else 1}/{split}{i:05d}.jpg"
            (root / IMAGES / name).parent.mkdir(parents=True, exist_ok=True)
            _easy_image(rng, fraction, grey).save(root / IMAGES / name, quality=95)
            rows.append({"filename": name, "FaceOcclusion": round(fraction, 6), "gender": float(rng.random() < 0.6)})
        frame = pd.DataFrame(rows)
        if split == "train":
            frame.to_csv(root / FILES["train"], sep=" ", index=False)
        else:
            frame[["filename"]].to_csv(root / FILES["test"], sep=" ", index=False)
            frame.to_csv(root / "test_truth.csv", sep=" ", index=False)
    return root


@pytest.fixture(scope="module")
def trained(train_promoted, tmp_path_factory):
    return train_promoted("occlusion", easy_data(tmp_path_factory.mktemp("occlusion-easy")), TINY)


def test_level_weights_are_inverse_frequencies_with_mean_one():
    occlusion = np.array([0.0] * 6 + [0.2] * 3 + [0.4])
    weights = np.array(level_weights(occlusion))
    assert len(weights) == LEVELS
    per_row = weights[levels(occlusion)]
    assert per_row.mean() == pytest.approx(1.0)
    assert per_row[0] * 6 == pytest.approx(per_row[6] * 3) == pytest.approx(per_row[9])


def test_ensemble_learns_better_than_predicting_the_mean(trained):
    _, _, _, metrics = trained
    assert {"score", "err_f", "err_m", "baseline_score"} <= set(metrics)
    assert metrics["score"] < 0.6 * metrics["baseline_score"], metrics


def test_submission_is_one_column_and_scores(trained, tmp_path):
    from facelab.predict import submit

    data, store, run_id, metrics = trained
    result = submit("occlusion", data, tmp_path / "sub.csv", store)
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert result["run_id"] == run_id and len(lines) == 60 and all(0 <= float(v) <= 1 for v in lines)
    scores = get_format("occlusion").score(tmp_path / "sub.csv", data / "test_truth.csv")
    truth = pd.read_csv(data / "test_truth.csv", sep=" ")
    mean = pd.read_csv(data / FILES["train"], sep=" ")["FaceOcclusion"].mean()
    baseline = fairness_score(np.full(len(truth), mean), truth["FaceOcclusion"], truth["gender"])
    # 60 test faces of a tiny unseeded fit: the held-out bar is looser than validation's 0.6 (a
    # full-suite run scored 0.73 of the baseline); a model that learned nothing scores about 1.0
    assert scores["score"] < 0.85 * baseline["score"], (scores, baseline)


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_requests_give_a_fraction_per_image(trained):
    """Request schema -> rows -> the batch predictor -> response, as the Serve deployment runs them."""
    from facelab.store import ModelStore

    data, store, run_id, _ = trained
    task = get_task("occlusion")
    predictor = task.predictor_class(str(ModelStore(store).load("occlusion", run_id).model_dir))
    rng = np.random.default_rng(9)
    light, heavy = _easy_image(rng, 0.05, False), _easy_image(rng, 0.45, True)
    rows, batched = task.request_rows(task.Request.model_validate({"images": [_b64(light), _b64(heavy)]}))
    column = np.empty(len(rows), dtype=object)
    column[:] = [r["image"] for r in rows]
    out = predictor({"image": column})
    answer = task.response([{k: v[i] for k, v in out.items()} for i in range(len(rows))], batched)
    low, high = (p["occlusion"] for p in answer["predictions"])
    assert batched and 0 <= low < high <= 1
    with pytest.raises(ValidationError):
        task.Request.model_validate({"image": _b64(light), "images": [_b64(light)]})
    with pytest.raises(UploadError) as bad:
        task.request_rows(task.Request.model_validate({"image": "not an image"}))
    assert bad.value.status == 422
