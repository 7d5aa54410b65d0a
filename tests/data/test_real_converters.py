"""Real-data converters to the sentiment (FER-2013) and FairFace (UTKFace) layouts, on small subsets."""

import json

import numpy as np
import pandas as pd
import pytest

from facelab.converters import convert
from facelab.converters.fairface import age_bin
from facelab.converters.sentiment import landmark_shape
from facelab.formats import get_format

pytestmark = pytest.mark.realdata


def test_age_bins():
    assert [age_bin(a) for a in (0, 2, 3, 9, 10, 19, 20, 69, 70, 116)] == [
        "0-2", "0-2", "3-9", "3-9", "10-19", "10-19", "20-29", "60-69", "more than 70", "more than 70"]


def test_landmark_shape_is_invariant_to_position_scale_and_roll():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (68, 2))
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * points @ rotation.T + [40, -7]
    assert np.allclose(landmark_shape(points), landmark_shape(moved), atol=1e-4)
    assert not np.allclose(landmark_shape(points), landmark_shape(points * [1, 1.3]), atol=1e-2)


def test_sentiment_from_fer(data_root, tmp_path, ray_local):
    out = tmp_path / "sentiment"
    result = convert("sentiment", data_root, out, n=6, seed=1)
    fmt = get_format("sentiment")
    train = fmt.read(out, "train").dataset.to_pandas()
    assert len(train) == 6 and set(train["label"]) <= {"negative", "neutral", "positive"}
    x = np.stack(train["embedding"].to_numpy())
    assert x.shape == (6, 512) and np.abs(x[:, :392]).sum(1).min() > 0 and not x[:, 392:].any()
    assert fmt.read(out, "val").dataset.count() == 6 and fmt.read(out, "test").dataset.count() == 6
    truth = pd.read_csv(out / "test_truth.csv")
    assert len(truth) == 6 and fmt.score(out / "test_truth.csv", out / "test_truth.csv")["f1_weighted"] == 1.0
    sources = pd.read_csv(out / "sources.csv")
    assert len(sources) == 18 and not sources["emotion"].eq("surprise").any()
    assert {s: r["rows"] for s, r in result["splits"].items()} == {"train": 6, "val": 6, "test": 6}


def test_fairface_from_utkface(data_root, tmp_path, ray_local):
    out = tmp_path / "fairface"
    result = convert("fairface", data_root, out, n=10, seed=1)
    assert json.loads((out / "labels.json").read_text())["race"] == ["White", "Black", "Asian", "Indian", "Others"]
    fmt = get_format("fairface")
    train = fmt.read(out, "train").dataset.to_pandas()
    assert len(train) == result["rows"]["train"] >= 5
    assert np.stack(train["embedding"].to_numpy()).shape[1] == 256
    labels = pd.read_csv(data_root / "utkface" / "labels.csv").set_index("file")
    for row in train.itertuples():
        utk = labels.loc[row.file.removeprefix("utkface/")]
        assert row.gender == ("Male", "Female")[utk["gender"]] and row.age == age_bin(utk["age"])
    skipped = pd.read_csv(out / "skipped.csv")
    assert sum(result["rows"].values()) + len(skipped) == 10
