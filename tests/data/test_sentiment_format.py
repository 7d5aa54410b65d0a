"""Blitz sentiment layout: reading, every kind of malformed row, submissions, scoring."""

import pandas as pd
import pytest

from facelab.errors import DataError
from facelab.formats import get_format, write_bad_rows
from facelab.formats.sentiment import DIM, LABELS

FMT = get_format("sentiment")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("sentiment"), n=200, seed=1)


def test_synthetic_layout(synth, ray_local):
    for name in ("train.csv", "val.csv", "test.csv", "sample_submission.csv"):
        assert (synth / name).is_file()
    train = pd.read_csv(synth / "train.csv")
    assert list(train.columns) == ["embeddings", "label"]
    assert set(train["label"]) == set(LABELS)
    read = FMT.read(synth, "train")
    batch = read.dataset.take_batch(4, batch_format="pandas")
    assert len(batch["embedding"][0]) == DIM and read.dataset.count() == 200 and read.bad == []


def test_synthesis_is_seeded(tmp_path):
    a = FMT.synthesize(tmp_path / "a", n=50, seed=3)
    b = FMT.synthesize(tmp_path / "b", n=50, seed=3)
    c = FMT.synthesize(tmp_path / "c", n=50, seed=4)
    assert (a / "train.csv").read_text() == (b / "train.csv").read_text() != (c / "train.csv").read_text()


def _corrupt(synth, tmp_path, row_index, column, value):
    frame = pd.read_csv(synth / "train.csv")
    frame.loc[row_index, column] = value
    frame.to_csv(tmp_path / "train.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("value, field, reason", [
    ("[0.1, 0.2", "embeddings", "not a list"),
    ("[" + ", ".join(["0.5"] * 100) + "]", "embeddings", "has 100 values"),
    ("[" + ", ".join(["NaN"] + ["0.5"] * (DIM - 1)) + "]", "embeddings", "NaN"),
    ("[" + ", ".join(['"x"'] * DIM) + "]", "embeddings", "not a list of numbers"),
    ("__import__('os')", "embeddings", "not a list"),
])
def test_bad_embedding_names_file_row_field(synth, tmp_path, ray_local, value, field, reason):
    data = _corrupt(synth, tmp_path, 6, "embeddings", value)
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    assert str(err.value).startswith(f"{data / 'train.csv'}: row 8: field '{field}'")
    assert reason in str(err.value)


def test_bad_label_and_skip_bad(synth, tmp_path, ray_local):
    data = _corrupt(synth, tmp_path, 0, "label", "happy")
    with pytest.raises(DataError, match="row 2: field 'label': 'happy'"):
        FMT.read(data, "train")
    read = FMT.read(data, "train", skip_bad=True)
    assert read.dataset.count() == 199
    assert [(b.row, b.field) for b in read.bad] == [(2, "label")]
    side = write_bad_rows(read.bad, tmp_path / "bad.csv")
    assert pd.read_csv(side).to_dict("records")[0]["reason"].startswith("'happy'")


def test_missing_column(synth, tmp_path, ray_local):
    pd.read_csv(synth / "train.csv").rename(columns={"label": "labels"}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="row 1: field 'label': missing column"):
        FMT.read(tmp_path, "train")


def test_submission_and_score(synth, tmp_path):
    truth = pd.read_csv(synth / "test_truth.csv")
    perfect = FMT.write_submission(truth[["label"]], tmp_path / "sub.csv", data=synth)
    written = pd.read_csv(perfect)
    assert list(written.columns) == list(pd.read_csv(synth / "sample_submission.csv").columns)
    assert FMT.score(perfect, synth / "test_truth.csv") == {"f1_weighted": 1.0, "accuracy": 1.0}
    (plot,) = FMT.plots(perfect, synth / "test_truth.csv", tmp_path / "plots")
    assert plot.stat().st_size > 1000
    wrong = FMT.write_submission(truth[["label"]].assign(label="neutral"), tmp_path / "wrong.csv", data=synth)
    assert FMT.score(wrong, synth / "test_truth.csv")["accuracy"] == pytest.approx((truth["label"] == "neutral").mean())


def test_submission_keeps_skipped_rows_in_place(synth, tmp_path):
    predictions = pd.DataFrame({"_row": [2, 4], "label": ["positive", "negative"]})
    frame = pd.read_csv(FMT.write_submission(predictions, tmp_path / "s.csv", data=synth), keep_default_na=False)
    assert frame["label"][0] == "positive" and frame["label"][1] == "" and frame["label"][2] == "negative"


def test_score_rejects_unknown_label(synth, tmp_path):
    truth = pd.read_csv(synth / "test_truth.csv")
    truth.loc[3, "label"] = "meh"
    truth.to_csv(tmp_path / "sub.csv", index=False)
    with pytest.raises(DataError, match="row 5: field 'label'"):
        FMT.score(tmp_path / "sub.csv", synth / "test_truth.csv")
