"""FER-2013 folders + labels.csv: splits by Usage, bad rows named, the folder-only layout, scoring."""

import shutil

import numpy as np
import pandas as pd
import pytest

from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.fer import EMOTIONS, emotion_metrics

FMT = get_format("emotion")
N = 20


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("fer"), n=N, seed=4)


def _labels(data):
    return pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False)


def _set(data, row_index, column, value):
    frame = _labels(data)
    frame.loc[row_index, column] = value
    frame.to_csv(data / "labels.csv", index=False)


def test_synthetic_layout_reads_by_usage(synth, ray_local):
    labels = _labels(synth)
    assert list(labels.columns) == ["file", "Usage", "emotion_name", "emotion"]
    assert labels.Usage.value_counts().to_dict() == {"Training": N, "PrivateTest": 12, "PublicTest": 8}
    assert all(labels.emotion.astype(int) == labels.emotion_name.map(EMOTIONS.index))
    for split, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        frame = FMT.read(synth, split).dataset.to_pandas()
        assert list(frame.columns) == ["_file", "_row", "file", "path", "label"]
        assert sorted(frame.file) == sorted(labels.file[labels.Usage == usage])
        row = frame.iloc[0]
        assert labels.loc[row["_row"] - 2, "file"] == row["file"] and row["path"].endswith(row["file"])
        assert row["label"] == labels.loc[row["_row"] - 2, "emotion_name"]


@pytest.mark.parametrize("column, value, field, reason", [
    ("emotion_name", "joy", "emotion_name", "'joy' is not one of angry"),
    ("emotion", "9", "emotion", "is not"),
    ("file", "../outside.jpg", "file", "not a path inside"),
    ("file", "train/missing.jpg", "file", "not found"),
    ("Usage", "Trainig", "Usage", "'Trainig' is not one of Training"),
])
def test_bad_rows_are_named(data_copy, ray_local, column, value, field, reason):
    _set(data_copy, 3, column, value)
    with pytest.raises(DataError) as err:
        FMT.read(data_copy, "train")
    assert err.value.bad.file.endswith("labels.csv") and err.value.bad.row == 5 and err.value.bad.field == field
    assert reason in err.value.bad.reason
    read = FMT.read(data_copy, "train", skip_bad=True)
    assert read.dataset.count() == N - 1 and [b.row for b in read.bad] == [5]


def test_image_in_another_emotions_folder_and_undecodable_image(data_copy, ray_local):
    labels = _labels(data_copy)
    name = labels.emotion_name[0]
    other = next(e for e in EMOTIONS if e != name)
    _set(data_copy, 0, "emotion_name", other)
    _set(data_copy, 0, "emotion", str(EMOTIONS.index(other)))
    (data_copy / labels.file[1]).write_bytes(b"not a jpeg")
    read = FMT.read(data_copy, "train", skip_bad=True)
    assert [(b.row, b.field) for b in read.bad] == [(2, "emotion_name"), (3, "file")]
    assert f"folder of '{name}'" in read.bad[0].reason and "cannot be decoded" in read.bad[1].reason


def test_folders_without_labels_csv(data_copy, ray_local):
    labels = _labels(data_copy)
    (data_copy / "labels.csv").unlink()
    frame = FMT.read(data_copy, "val").dataset.to_pandas()
    expected = labels[labels.Usage == "PublicTest"]
    assert sorted(frame.file) == sorted(expected.file)
    assert dict(zip(frame.file, frame.label)) == dict(zip(expected.file, expected.emotion_name))


def test_submission_round_trip_and_score(synth, tmp_path):
    truth = _labels(synth)
    test = truth[truth.Usage == "PrivateTest"].reset_index(drop=True)
    perfect = FMT.write_submission(pd.DataFrame({"file": test.file, "label": test.emotion_name}), tmp_path / "sub.csv")
    assert list(pd.read_csv(perfect).columns) == ["file", "emotion_name", "emotion"]
    scores = FMT.score(perfect, synth / FMT.synthetic_truth)
    assert scores["accuracy"] == 1.0 and scores["n"] == len(test) and scores["accuracy_at_train_prior"] == 1.0
    wrong = test.emotion_name.map(lambda e: EMOTIONS[(EMOTIONS.index(e) + 1) % 7])
    worst = FMT.write_submission(pd.DataFrame({"file": test.file[::-1], "label": wrong[::-1]}), tmp_path / "w.csv")
    assert FMT.score(worst, synth)["accuracy"] == 0.0  # order does not matter; the folder is a truth too
    assert FMT.plots(perfect, synth, tmp_path / "plots")[0].is_file()


def test_bad_submissions_are_named(synth, tmp_path):
    test = _labels(synth).query("Usage == 'PrivateTest'")
    sub = pd.DataFrame({"file": test.file, "emotion_name": test.emotion_name})
    cases = {
        "missing": (sub.iloc[1:], 0, "no prediction for"),
        "twice": (pd.concat([sub, sub.iloc[:1]]), len(sub) + 2, "appears twice"),
        "label": (sub.assign(emotion_name=["joy"] + list(sub.emotion_name[1:])), 2, "not an emotion"),
        "unknown": (pd.concat([sub, pd.DataFrame({"file": ["x.jpg"], "emotion_name": ["sad"]})]), len(sub) + 2,
                    "not a scored image"),
    }
    for name, (frame, row, reason) in cases.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        with pytest.raises(DataError) as err:
            FMT.score(tmp_path / f"{name}.csv", synth)
        assert err.value.bad.row == row and reason in err.value.bad.reason, name


def test_accuracy_at_train_prior_by_hand():
    # test: 2 happy (both right), 2 sad (one right); Training: 3 happy, 1 sad
    scores = emotion_metrics(["happy", "happy", "sad", "sad"], ["happy", "happy", "sad", "happy"],
                             ["happy", "happy", "happy", "sad"])
    assert scores["accuracy"] == 0.75
    assert scores["accuracy_at_train_prior"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.5)
    assert scores["f1_happy"] == pytest.approx(0.8) and scores["f1_sad"] == pytest.approx(2 / 3)
    assert scores["f1_angry"] == 0.0


@pytest.mark.realdata
def test_real_fer2013_reads_clean(data_root, ray_local):
    root = data_root / "fer2013"
    if not root.is_dir():
        pytest.skip("no fer2013 under the data root")
    test = FMT.read(root, "test")
    frame = test.dataset.to_pandas()
    assert test.bad == [] and len(frame) == 415
    assert frame.label.value_counts().to_dict() == {e: 55 if e == "disgust" else 60 for e in EMOTIONS}
    labels = pd.read_csv(root / "labels.csv")
    assert labels.Usage.value_counts().to_dict() == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 415}
    assert np.all(labels.emotion == labels.emotion_name.map(EMOTIONS.index))
