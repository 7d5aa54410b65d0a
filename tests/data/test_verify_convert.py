"""ORL -> verify pairs (balanced, people-disjoint folds), and the verify layout's reader and scorer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from facelab.converters import convert
from facelab.errors import DataError, FacelabError
from facelab.formats import get_format
from facelab.formats.verify import PAIRS

REPO_ROOT = Path(__file__).resolve().parents[2]


def _person(path: str) -> str:
    return path.split("/")[1]


@pytest.fixture(scope="module")
def orl_pairs(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify-orl")
    summary = convert("verify", data_root, out, seed=0)
    return out, summary, pd.read_csv(out / PAIRS)


@pytest.mark.realdata
def test_full_orl_protocol(orl_pairs):
    out, summary, pairs = orl_pairs
    assert list(pairs.columns) == ["fold", "file_a", "file_b", "same"]
    assert summary["pairs"] == len(pairs) == 3600 and summary["people"] == 40 and summary["images"] == 400
    counts = pairs.groupby(["fold", "same"]).size().unstack()
    assert list(counts.index) == list(range(1, 11))
    assert (counts[0] == 180).all() and (counts[1] == 180).all()  # balanced, every same pair of the fold's people
    people = pairs.assign(a=pairs["file_a"].map(_person), b=pairs["file_b"].map(_person))
    assert ((people["a"] == people["b"]) == (people["same"] == 1)).all()  # labels match the folders
    folds_of = pd.concat([people[["fold", "a"]].rename(columns={"a": "p"}), people[["fold", "b"]].rename(columns={"b": "p"})])
    assert (folds_of.groupby("p")["fold"].nunique() == 1).all()  # no person in two folds
    assert (folds_of.groupby("fold")["p"].nunique() == 4).all()
    unordered = {frozenset(p) for p in zip(pairs["file_a"], pairs["file_b"])}
    assert len(unordered) == len(pairs) and all(a != b for a, b in zip(pairs["file_a"], pairs["file_b"]))
    assert all((out / f).is_file() for f in set(pairs["file_a"]) | set(pairs["file_b"]))


@pytest.mark.realdata
def test_conversion_is_seeded_and_sized(data_root, tmp_path, orl_pairs):
    again = convert("verify", data_root, tmp_path / "again", seed=0)
    assert pd.read_csv(tmp_path / "again" / PAIRS).equals(orl_pairs[2]) and again["pairs"] == 3600
    other = convert("verify", data_root, tmp_path / "other", seed=1)
    assert not pd.read_csv(tmp_path / "other" / PAIRS).equals(orl_pairs[2]) and other["pairs"] == 3600
    small = convert("verify", data_root, tmp_path / "small", seed=0, people=6, folds=3, n=5)
    assert small["people"] == 6 and small["same_per_fold"] == [5, 5, 5] and small["different_per_fold"] == [5, 5, 5]
    with pytest.raises(FacelabError, match="cannot fill"):
        convert("verify", data_root, tmp_path / "bad", people=5, folds=3)
    with pytest.raises(FacelabError, match="outside the repository"):
        convert("verify", data_root, REPO_ROOT / "runs" / "orl-pairs")
    assert not (REPO_ROOT / "runs" / "orl-pairs").exists()


@pytest.mark.realdata
def test_converted_pairs_read_clean(data_root, tmp_path, ray_local):
    convert("verify", data_root, tmp_path, seed=0, people=6, folds=3, n=5)
    read = get_format("verify").read(tmp_path, "pairs")
    frame = read.dataset.to_pandas()
    assert read.bad == [] and len(frame) == 30
    assert set(frame["same"]) == {0, 1} and set(frame["fold"]) == {1, 2, 3}
    assert all(p.startswith(str(tmp_path.resolve())) for p in frame["path_a"])


# --- the layout on synthetic data (no real data needed) ---------------------------------------

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return get_format("verify").synthesize(tmp_path_factory.mktemp("verify-synth") / "data", n=8, seed=3)


def _corrupt(folder, row: int, **values) -> None:
    pairs = pd.read_csv(folder / PAIRS, dtype=str)
    for column, value in values.items():
        pairs.loc[row, column] = value
    pairs.to_csv(folder / PAIRS, index=False)


@pytest.mark.parametrize("values, field", [
    ({"file_b": "images/p01/9.jpg"}, "file_b"),  # missing image
    ({"same": "yes"}, "same"),                   # bad label
    ({"fold": "0"}, "fold"),
    ({"file_a": "../outside.jpg"}, "file_a"),    # leaves the data folder
])
def test_bad_rows_are_named(data_copy, ray_local, values, field):
    _corrupt(data_copy, 2, **values)
    with pytest.raises(DataError) as error:
        get_format("verify").read(data_copy, "pairs")
    assert (error.value.bad.row, error.value.bad.field) == (4, field)  # CSV line 4 = data row 2
    read = get_format("verify").read(data_copy, "pairs", skip_bad=True)
    assert [b.row for b in read.bad] == [4] and read.dataset.count() == len(pd.read_csv(data_copy / PAIRS)) - 1


def test_score_and_roc(synth, tmp_path):
    fmt = get_format("verify")
    truth = pd.read_csv(synth / PAIRS)
    perfect = truth.assign(distance=1.0 - truth["same"] + 0.001 * (truth.index % 3))
    fmt.write_submission(perfect, tmp_path / "perfect.csv")
    scores = fmt.score(tmp_path / "perfect.csv", synth / PAIRS)
    assert scores["accuracy"] == 1.0 and scores["roc_auc"] == 1.0 and scores["false_accept_rate"] == 0.0
    assert [p.name for p in fmt.plots(tmp_path / "perfect.csv", synth / PAIRS, tmp_path / "plots")] == ["roc.png"]
    flipped = truth.assign(same=1 - truth["same"]).sample(frac=1, random_state=0)  # any row order
    fmt.write_submission(flipped, tmp_path / "flipped.csv")
    assert fmt.score(tmp_path / "flipped.csv", synth / PAIRS)["accuracy"] == 0.0
    assert fmt.plots(tmp_path / "flipped.csv", synth / PAIRS, tmp_path / "plots") == []  # no distances, no ROC
    fmt.write_submission(truth.iloc[1:], tmp_path / "short.csv")
    with pytest.raises(DataError, match="no row for pair"):
        fmt.score(tmp_path / "short.csv", synth / PAIRS)
    bad = truth.astype({"same": str})
    bad.loc[0, "same"] = "maybe"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="maybe"):
        fmt.score(tmp_path / "bad.csv", synth / PAIRS)
