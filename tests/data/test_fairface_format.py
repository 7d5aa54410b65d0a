"""FairFace layout: label CSVs joined with an embedding table, vocabularies, mangled labels, scoring."""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.fairface import AGE_BINS, FILES, GENDERS, RACES

FMT = get_format("fairface")
N = 40


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("fairface"), n=N, seed=2)



def _labels(data, split="train"):
    return pd.read_csv(data / FILES[split], dtype=str, keep_default_na=False)


def _set_label(data, row_index, column, value):
    frame = _labels(data)
    frame.loc[row_index, column] = value
    frame.to_csv(data / FILES["train"], index=False)


def _set_embeddings(data, update):
    table = pq.read_table(data / "embeddings.parquet").to_pandas()
    table = update(table)
    embedding = pa.array([np.asarray(v, np.float32) for v in table.embedding], pa.list_(pa.float32()))  # keeps NaN
    pq.write_table(pa.table({"file": table.file.tolist(), "embedding": embedding}), data / "embeddings.parquet")


def test_synthetic_layout(synth, ray_local):
    train = _labels(synth)
    assert list(train.columns) == ["file", "age", "gender", "race", "service_test"]
    assert train.file[0] == "train/1.jpg" and _labels(synth, "val").file[0] == "val/1.jpg"
    assert set(train.age) <= set(AGE_BINS) and set(train.gender) == set(GENDERS) and set(train.race) <= set(RACES)
    assert list(pd.read_csv(synth / FILES["test"]).columns) == ["file"]
    read = FMT.read(synth, "train")
    frame = read.dataset.to_pandas()
    assert list(frame.columns) == ["_file", "_row", "file", "embedding", "age", "gender", "race"]
    assert len(frame) == N and read.bad == []
    embeddings = np.stack(frame.embedding)
    assert embeddings.dtype == np.float32 and embeddings.shape == (N, 512)
    assert frame.age.tolist() == train.age.tolist() and frame.race.tolist() == train.race.tolist()
    stored = pq.read_table(synth / "embeddings.parquet").to_pandas().set_index("file")
    assert np.allclose(embeddings[3], stored.loc[frame.file[3], "embedding"])
    test = FMT.read(synth, "test").dataset.to_pandas()
    assert len(test) == len(pd.read_csv(synth / "test_truth.csv")) and set(test.age) == {""}


def test_synthesis_is_seeded(tmp_path):
    a = FMT.synthesize(tmp_path / "a", n=20, seed=3)
    b = FMT.synthesize(tmp_path / "b", n=20, seed=3)
    c = FMT.synthesize(tmp_path / "c", n=20, seed=4)
    assert (a / FILES["train"]).read_text() == (b / FILES["train"]).read_text() != (c / FILES["train"]).read_text()
    assert pq.read_table(a / "embeddings.parquet").equals(pq.read_table(b / "embeddings.parquet"))


@pytest.mark.parametrize("column, value, reason", [
    ("age", "03-Sep", "'03-Sep' looks spreadsheet-mangled"),
    ("age", "Oct-19", "'Oct-19' looks spreadsheet-mangled"),
    ("age", "2019-10-19", "'2019-10-19' looks spreadsheet-mangled"),
    ("age", "3 - 9", "'3 - 9' is not one of 0-2, 3-9"),
    ("gender", "male", "'male' is not one of Male, Female"),
    ("race", "Asian", "'Asian' is not one of White"),
])
def test_bad_label_names_file_row_field(synth, tmp_path, ray_local, column, value, reason, data_copy):
    data = data_copy
    _set_label(data, 4, column, value)
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    assert str(err.value).startswith(f"{data / FILES['train']}: row 6: field '{column}': {reason}")


def test_declared_race_vocabulary(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    utk = ["White", "Black", "Asian", "Indian", "Others"]
    frame = _labels(data).assign(race=lambda f: [utk[i % 5] for i in range(len(f))])
    frame.to_csv(data / FILES["train"], index=False)
    with pytest.raises(DataError, match="field 'race': 'Asian' is not one of"):
        FMT.read(data, "train")
    (data / "labels.json").write_text(json.dumps({"race": utk}))
    assert sorted(set(FMT.read(data, "train").dataset.to_pandas().race)) == sorted(utk)
    (data / "labels.json").write_text(json.dumps({"skin": ["a"]}))
    with pytest.raises(DataError, match="labels.json: row 1: field 'skin': unknown attribute"):
        FMT.read(data, "train")


@pytest.mark.parametrize("update, reason", [
    (lambda t: t.drop(index=2), "no embedding for 'train/3.jpg' in embeddings.parquet"),
    (lambda t: t.assign(embedding=[v[:100] if i == 2 else v for i, v in enumerate(t.embedding)]),
     "has 100 values, expected 512"),
    (lambda t: t.assign(embedding=[np.where(np.arange(512) == 7, np.nan, v) if i == 2 else v
                                   for i, v in enumerate(t.embedding)]), "contains NaN or infinity"),
])
def test_bad_embedding_then_skip_bad(synth, tmp_path, ray_local, update, reason, data_copy):
    data = data_copy
    _set_embeddings(data, update)
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    assert str(err.value) == f"{data / FILES['train']}: row 4: field 'embedding': {reason}"
    read = FMT.read(data, "train", skip_bad=True)
    assert read.dataset.count() == N - 1 and [(b.row, b.field) for b in read.bad] == [(4, "embedding")]


def test_embeddings_csv_is_parsed_as_json(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    table = pq.read_table(data / "embeddings.parquet").to_pandas()
    text = ["[" + ", ".join(repr(float(x)) for x in v) + "]" for v in table.embedding]
    text[5] = "__import__('os').system('true')"
    pd.DataFrame({"file": table.file, "embedding": text}).to_csv(data / "embeddings.csv", index=False)
    (data / "embeddings.parquet").unlink()
    read = FMT.read(data, "train", skip_bad=True)
    assert [(b.row, b.field) for b in read.bad] == [(7, "embedding")] and "not a list" in read.bad[0].reason
    frame = read.dataset.to_pandas()
    assert np.allclose(frame.embedding[0], table.embedding[0])


def test_missing_column_and_duplicate_embedding(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    _labels(data).drop(columns=["race"]).to_csv(data / FILES["train"], index=False)
    with pytest.raises(DataError, match="row 1: field 'race': missing column"):
        FMT.read(data, "train")
    data = shutil.copytree(synth, tmp_path / "data2")
    _set_embeddings(data, lambda t: pd.concat([t, t.iloc[[0]]]))
    with pytest.raises(DataError, match="embeddings.parquet: row .*: field 'file': 'train/1.jpg' has more than one"):
        FMT.read(data, "train")


def test_perfect_submission_and_test_order(synth, tmp_path):
    truth = pd.read_csv(synth / "test_truth.csv")
    path = FMT.write_submission(truth.sample(frac=1, random_state=0), tmp_path / "sub.csv", data=synth)
    written = pd.read_csv(path)
    assert list(written.columns) == ["file", "age", "gender", "race"] and written.file.tolist() == truth.file.tolist()
    assert set(FMT.score(path, synth / "test_truth.csv").values()) == {1.0}


def test_hand_checked_score(tmp_path):
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"file": ["a", "b", "c", "d"], "age": ["3-9", "3-9", "20-29", "more than 70"],
                  "gender": ["Male", "Male", "Female", "Female"], "race": ["White"] * 4}).to_csv(truth, index=False)
    sub = FMT.write_submission(pd.DataFrame({
        "file": ["d", "c", "b", "a"], "age": ["more than 70", "20-29", "3-9", "3-9"],
        "gender": ["Female", "Female", "Female", "Male"], "race": ["White"] * 4}), tmp_path / "sub.csv")
    result = FMT.score(sub, truth)
    # gender: b wrong -> accuracy 3/4; F1(Male) = 2*1*0.5/1.5 = 2/3, F1(Female) = 2*(2/3)*1/(5/3) = 4/5
    assert result["gender_accuracy"] == 0.75
    assert result["gender_f1_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert result["age_accuracy"] == 1.0 and result["race_f1_macro"] == 1.0


def test_bad_submissions(synth, tmp_path):
    truth = pd.read_csv(synth / "test_truth.csv")
    bad = truth.copy()
    bad.loc[2, "gender"] = "M"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv: row 4: field 'gender': 'M' is not one of"):
        FMT.score(tmp_path / "bad.csv", synth / "test_truth.csv")
    truth.drop(index=1).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"test_truth.csv: row 3: field 'file': no prediction for 'test/2.jpg'"):
        FMT.score(tmp_path / "short.csv", synth / "test_truth.csv")
    with pytest.raises(DataError, match=r"predictions: row 2: field 'age': '10-19 ' is not one of"):
        FMT.write_submission(truth.assign(age=["0-2", "10-19 "] + ["0-2"] * (len(truth) - 2)), tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"label_test.csv: row 2: field 'file': no prediction for 'test/1.jpg'"):
        FMT.write_submission(truth.iloc[1:], tmp_path / "y.csv", data=synth)
