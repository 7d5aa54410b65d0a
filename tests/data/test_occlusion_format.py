"""Face occlusion layout: space-delimited CSVs over image crops, NaN labels, the fairness score."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.occlusion import FILES, IMAGES, drop_unlabelled

FMT = get_format("occlusion")
N = 24


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("occlusion"), n=N, seed=1)



def _train(data):
    return pd.read_csv(data / FILES["train"], sep=" ", dtype=str, keep_default_na=False)


def _write_train(data, frame):
    frame.to_csv(data / FILES["train"], sep=" ", index=False)


def test_synthetic_layout(synth, ray_local):
    first = (synth / FILES["train"]).read_text().splitlines()[0]
    assert first == "filename FaceOcclusion gender"
    assert (synth / FILES["test"]).read_text().splitlines()[0] == "filename"
    names = _train(synth)["filename"]
    assert any(n.startswith("database3/database3/m.0") for n in names)
    with Image.open(synth / IMAGES / names[0]) as image:
        assert image.size == (224, 224) and image.mode == "RGB"
    read = FMT.read(synth, "train")
    frame = read.dataset.to_pandas()
    assert list(frame.columns) == ["_file", "_row", "filename", "path", "occlusion", "gender"]
    assert len(frame) == N and read.bad == []
    assert frame["_row"].tolist() == list(range(2, N + 2))
    assert all(p.endswith(f) for p, f in zip(frame["path"], frame["filename"]))
    occlusion = frame["occlusion"].to_numpy(np.float64)
    occlusion = occlusion[~np.isnan(occlusion)]
    assert ((occlusion >= 0) & (occlusion <= 1)).all() and occlusion.max() > 0.05


def test_synthesis_is_seeded(tmp_path):
    a = FMT.synthesize(tmp_path / "a", n=4, seed=3)
    b = FMT.synthesize(tmp_path / "b", n=4, seed=3)
    c = FMT.synthesize(tmp_path / "c", n=4, seed=4)
    assert (a / FILES["train"]).read_text() == (b / FILES["train"]).read_text() != (c / FILES["train"]).read_text()


def test_nan_labels_are_kept_then_dropped(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    frame = _train(data)
    frame.loc[1, "FaceOcclusion"] = ""
    frame.loc[4, "gender"] = "nan"
    _write_train(data, frame)
    read = FMT.read(data, "train")
    rows = read.dataset.to_pandas().set_index("_row")
    assert read.bad == [] and len(rows) == N
    assert math.isnan(rows.loc[3, "occlusion"]) and math.isnan(rows.loc[6, "gender"])
    kept, dropped = drop_unlabelled(read.dataset)
    assert dropped == 2 + frame.drop([1, 4]).eq("").any(axis=1).sum()
    assert kept.count() == N - dropped


@pytest.mark.parametrize("column, value, reason", [
    ("FaceOcclusion", "abc", "'abc' is not a number"),
    ("FaceOcclusion", "1.5", "1.5 is outside [0, 1]"),
    ("gender", "-0.2", "-0.2 is outside [0, 1]"),
])
def test_bad_cell_names_file_row_field(synth, tmp_path, ray_local, column, value, reason, data_copy):
    data = data_copy
    frame = _train(data)
    frame.loc[5, column] = value
    _write_train(data, frame)
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    assert str(err.value) == f"{data / FILES['train']}: row 7: field '{column}': {reason}"


def test_missing_and_unreadable_images_then_skip_bad(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    names = _train(data)["filename"]
    (data / IMAGES / names[2]).unlink()
    (data / IMAGES / names[9]).write_bytes(b"not a jpeg")
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    assert str(err.value).startswith(f"{data / FILES['train']}: row 4: field 'filename': image not found")
    assert "and 1 more bad rows" in str(err.value)
    read = FMT.read(data, "train", skip_bad=True)
    assert read.dataset.count() == N - 2
    assert [(b.row, b.field) for b in read.bad] == [(4, "filename"), (11, "filename")]
    assert "unreadable image" in read.bad[1].reason


def test_missing_column(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    _write_train(data, _train(data).drop(columns=["gender"]))
    with pytest.raises(DataError, match="row 1: field 'gender': missing column"):
        FMT.read(data, "train")


def test_test_split_with_or_without_empty_label_columns(synth, tmp_path, ray_local, data_copy):
    frame = FMT.read(synth, "test").dataset.to_pandas()
    assert len(frame) == len(pd.read_csv(synth / FILES["test"])) and np.isnan(frame["occlusion"].to_numpy(float)).all()
    data = data_copy
    test = pd.read_csv(data / FILES["test"]).assign(FaceOcclusion="", gender="")
    test.to_csv(data / FILES["test"], sep=" ", index=False)
    assert np.isnan(FMT.read(data, "test").dataset.to_pandas()["gender"].to_numpy(float)).all()


def test_perfect_submission_scores_zero_and_follows_test_order(synth, tmp_path):
    truth = pd.read_csv(synth / "test_truth.csv", sep=" ")
    shuffled = truth.rename(columns={"FaceOcclusion": "occlusion"}).sample(frac=1, random_state=0)
    path = FMT.write_submission(shuffled, tmp_path / "submission.csv", data=synth)
    lines = path.read_text().splitlines()
    assert len(lines) == len(truth) and float(lines[0]) == truth["FaceOcclusion"][0]  # no header, test order
    assert FMT.score(path, synth / "test_truth.csv") == {"err_f": 0.0, "err_m": 0.0, "score": 0.0}
    constant = FMT.write_submission(pd.DataFrame({"occlusion": [0.5] * len(truth)}), tmp_path / "c.csv")
    assert FMT.score(constant, synth / "test_truth.csv")["score"] > 0.01


def test_hand_checked_score(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("filename FaceOcclusion gender\na.jpg 0.1 0.2\nb.jpg 0.3 0.9\nc.jpg 0.0 0.1\nd.jpg 0.2 0.7\n"
                     "e.jpg  0.3\n")  # e: no occlusion label, not scored
    sub = FMT.write_submission(pd.DataFrame({"occlusion": [0.2, 0.3, 0.1, 0.1, 0.9]}), tmp_path / "s.csv")
    # women a, c: w = 1/30 + GT = 4/30, 1/30; squared errors 0.01, 0.01 -> Err_F = 0.01
    # men b, d: w = 10/30, 7/30; squared errors 0, 0.01 -> Err_M = (7/30 * 0.01) / (17/30) = 0.07/17
    err_f, err_m = 0.01, 0.07 / 17
    result = FMT.score(sub, truth)
    assert result["err_f"] == pytest.approx(err_f) and result["err_m"] == pytest.approx(err_m)
    assert result["score"] == pytest.approx((err_f + err_m) / 2 + abs(err_f - err_m))


def test_bad_submissions(synth, tmp_path):
    truth = synth / "test_truth.csv"
    n = len(pd.read_csv(truth, sep=" "))
    short = tmp_path / "short.csv"
    short.write_text("0.1\n" * (n - 1))
    with pytest.raises(DataError, match=f"row {n}: field 'prediction': {n - 1} predictions but"):
        FMT.score(short, truth)
    text = tmp_path / "text.csv"
    text.write_text("0.1\n0.2\nabc\n" + "0.1\n" * (n - 3))
    with pytest.raises(DataError, match=f"{text}: row 3: field 'prediction': 'abc' is not a finite number"):
        FMT.score(text, truth)
    with pytest.raises(DataError, match="row 2: field 'occlusion'"):
        FMT.write_submission(pd.DataFrame({"occlusion": [0.1, np.nan]}), tmp_path / "x.csv")
    with pytest.raises(DataError, match="no prediction for"):
        FMT.write_submission(pd.DataFrame({"filename": ["zzz.jpg"], "occlusion": [0.1]}), tmp_path / "y.csv",
                             data=synth)
