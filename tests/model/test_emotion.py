"""Emotion (HexaFace FER): the VGG-like CNN trains through the shared Ray Train mechanism on an easy
synthetic FER set (three expressions), beats the majority class, submits and scores PrivateTest,
and answers Serve-style requests."""

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facelab.formats import get_format
from facelab.formats.fer import EMOTIONS
from facelab.tasks import get_task
from facelab.uploads import UploadError

@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared emotion fit (fit_cases.py: three distinct expressions, the demo config)."""
    return task_fit("emotion")


@pytest.fixture(scope="module")
def emotion_data(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def trained(fit):
    return fit.store, fit.run, fit.metrics


def majority_share(data, usage):
    labels = pd.read_csv(data / "labels.csv").query("Usage == @usage")
    return labels.emotion_name.value_counts(normalize=True).max()


def test_learns_beyond_the_majority_class(trained, emotion_data):
    _, run, metrics = trained
    history = pd.read_csv(run.model_dir / "history.csv")
    assert len(history) == 8 and {"train_loss", "val_accuracy", "val_f1_macro", "lr"} <= set(history.columns)
    assert metrics["val_accuracy"] == pytest.approx(history.val_accuracy.max())
    # the demo net (8 epochs, 300 images) reaches ~0.54 where the majority class is 0.41; a net that
    # learned nothing sits at the majority share
    assert metrics["val_accuracy"] > majority_share(emotion_data, "PublicTest") + 0.08
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    assert {"confusion_matrix.png", "history.png", "model.pt"} <= {p.name for p in run.model_dir.iterdir()}
    assert metrics["val_f1_happy"] > 0 and metrics["val_f1_sad"] > 0


def test_submission_scores_privatetest(fit, emotion_data, tmp_path):
    result = fit.submission()
    out = Path(result["submission"])
    frame = pd.read_csv(out)
    test = pd.read_csv(emotion_data / "labels.csv").query("Usage == 'PrivateTest'")
    assert result["rows"] == len(test) and list(frame.columns) == ["file", "emotion_name", "emotion"]
    assert sorted(frame.file) == sorted(test.file) and set(frame.emotion_name) <= set(EMOTIONS)
    fmt = get_format("emotion")
    scores = fmt.score(out, emotion_data / "labels.csv")
    # the 8-epoch demo net is near the majority share on PrivateTest (0.49-0.52 against 0.48), so
    # what is checked here is that every row keeps its own image: the same answers given to the
    # wrong files score far lower (~0.37)
    shuffled = frame.assign(file=frame.file.sample(frac=1, random_state=0).to_numpy())
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    assert scores["accuracy"] > fmt.score(tmp_path / "shuffled.csv", emotion_data / "labels.csv")["accuracy"] + 0.05


def _b64(path):
    return base64.b64encode(path.read_bytes()).decode()


def test_requests_single_batch_and_bad_uploads(trained, emotion_data):
    _, run, _ = trained
    task = get_task("emotion")
    predictor = task.predictor_class(str(run.model_dir))
    files = pd.read_csv(emotion_data / "labels.csv").query("Usage == 'PrivateTest'").file.head(3).tolist()
    one = task.Request.model_validate({"image": _b64(emotion_data / files[0])})
    rows, batched = task.request_rows(one)
    answer = task.response([{k: v[0] for k, v in predictor({"image": np.stack([rows[0]["image"]])}).items()}], batched)
    assert answer["emotion"] in EMOTIONS and sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    # the same image as a file path (batch jobs) and as an upload (Serve) gets the same answer
    by_path = predictor({"path": np.array([str(emotion_data / files[0])])})
    assert by_path["label"][0] == answer["emotion"]
    assert by_path["p_happy"][0] == pytest.approx(answer["probabilities"]["happy"], abs=2e-3)
    many, batched = task.request_rows(task.Request.model_validate({"images": [_b64(emotion_data / f) for f in files]}))
    assert batched and len(many) == 3
    with pytest.raises(UploadError) as err:
        task.request_rows(task.Request.model_validate({"image": base64.b64encode(b"not an image").decode()}))
    assert err.value.status == 415
    with pytest.raises(Exception):
        task.Request.model_validate({"image": _b64(emotion_data / files[0]), "colour": True})


def test_early_stopping_rule():
    from facelab.torch_train import _stalled

    history = [{"acc": a} for a in (0.2, 0.5, 0.4, 0.45)]
    assert not _stalled(history, "acc", "max", 3) and _stalled(history, "acc", "max", 2)
    assert not _stalled(history, "acc", "max", None)
    assert _stalled([{"loss": v} for v in (1.0, 0.5, 0.6)], "loss", "min", 1)
