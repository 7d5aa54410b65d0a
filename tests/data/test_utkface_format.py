"""UTKFace read in place (format "age-gender"): a seeded split, bad rows named, a folder without
labels.csv read from the file names, submissions in test order, the fairness-slice score."""

import shutil

import pandas as pd
import pytest

from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.utkface import split_names

FMT = get_format("age-gender")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("utkface"), n=40, seed=2)


@pytest.fixture
def data(synth, tmp_path):
    return shutil.copytree(synth, tmp_path / "data")


def test_split_is_seeded_disjoint_and_covers_every_file():
    files = [f"images/{i}_0_0_x.jpg" for i in range(100)]
    splits = split_names(files)
    assert (splits == split_names(list(reversed(files)))[::-1]).all()  # by name, not by listing order
    assert {s: int((splits == s).sum()) for s in ("train", "val", "test")} == {"train": 70, "val": 15, "test": 15}
    assert (split_names(files, seed=1) != splits).any()


def test_reads_every_split_with_integer_labels(synth, ray_local):
    frames = {s: FMT.read(synth, s).dataset.to_pandas() for s in ("train", "val", "test")}
    assert sum(len(f) for f in frames.values()) == 40
    assert set(frames["test"]["file"]) == set(pd.read_csv(synth / "test_truth.csv")["file"])
    train = frames["train"]
    assert list(train.columns) == ["_file", "_row", "file", "path", "age", "gender", "race"]
    assert pd.api.types.is_integer_dtype(train["age"]) and set(train["gender"]) <= {0, 1} and set(train["race"]) <= set(range(5))


def test_bad_rows_are_named(data, ray_local):
    labels = pd.read_csv(data / "labels.csv", dtype=str)
    labels.loc[0, "age"] = "x"
    labels.loc[1, "race"] = "7"
    labels.loc[2, "gender"] = str(1 - int(labels.loc[2, "gender"]))  # disagrees with the file name
    (data / labels.loc[3, "file"]).unlink()
    labels.to_csv(data / "labels.csv", index=False)
    bad = [b for split in ("train", "val", "test") for b in FMT.read(data, split, skip_bad=True).bad]
    found = {b.row: (b.field, b.reason) for b in bad}
    assert found[2][0] == "age" and "'x'" in found[2][1]
    assert found[3][0] == "race"
    assert found[4][0] == "gender" and "file name" in found[4][1]
    assert found[5][0] == "file" and "not found" in found[5][1]
    split = split_names(labels["file"].tolist())[0]
    with pytest.raises(DataError, match="row 2: field 'age'"):
        FMT.read(data, split)


def test_a_folder_of_named_images_without_labels_csv(data, ray_local):
    (data / "labels.csv").unlink()
    (data / "images" / "no_labels_here.jpg").write_bytes(next((data / "images").iterdir()).read_bytes())
    reads = {s: FMT.read(data, s, skip_bad=True) for s in ("train", "val", "test")}
    assert sum(r.dataset.count() for r in reads.values()) == 40
    bad = [b for r in reads.values() for b in r.bad]
    assert len(bad) == 1 and "not a UTKFace name" in bad[0].reason


def test_submission_order_and_score(synth, tmp_path):
    truth = pd.read_csv(synth / "test_truth.csv")
    shuffled = truth.sample(frac=1, random_state=0).assign(age=lambda f: f["age"] + 2.0)
    out = FMT.write_submission(shuffled, tmp_path / "sub.csv", data=synth)
    assert list(pd.read_csv(out)["file"]) == FMT.test_order(synth) == list(truth["file"])
    scores = FMT.score(out, synth)
    assert scores["age_mae"] == pytest.approx(2.0) and scores["gender_accuracy"] == 1.0
    assert scores["race_accuracy"] == 1.0 and scores["n"] == len(truth)
    assert scores == FMT.score(out, synth / "test_truth.csv")
    # +2 years moves exactly the ages ending in 8 or 9 into the next decade bin
    moved = (truth["age"] % 10 >= 8) & (truth["age"] < 98)
    assert scores["age_bin_accuracy"] == pytest.approx(1 - moved.mean())
    with pytest.raises(DataError, match="no prediction for test file"):
        FMT.write_submission(shuffled.iloc[1:], tmp_path / "short.csv", data=synth)
