"""`facelab data convert --task age-bins`: UTKFace in the AI Blitz XIII age layout (ten decade bins,
100 and over in 90-100), seeded and stratified, read back by the age-bins format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.converters import convert
from facelab.converters.age_bins import age_bin
from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.formats.age_bins import AGE_BINS


def test_age_bins_edges():
    assert [age_bin(a) for a in (0, 9, 10, 19, 20, 89, 90, 99, 100, 116)] == [
        "0-10", "0-10", "10-20", "10-20", "20-30", "80-90", "90-100", "90-100", "90-100", "90-100"]
    # predicted ages (the age regressor's expectations) are floored, negative ones kept in 0-10
    assert [age_bin(a) for a in (9.99, 10.0, -0.5, 150.2)] == ["0-10", "10-20", "0-10", "90-100"]


@pytest.fixture
def fake_utkface(tmp_path):
    """A data root with a tiny UTKFace: 45 photos, ages 1..116, some over 100."""
    root = tmp_path / "root"
    (root / "utkface" / "images").mkdir(parents=True)
    ages = [1 + (i * 37) % 116 for i in range(40)] + [100, 103, 110, 116, 95]
    rows = []
    for i, age in enumerate(ages):
        name = f"images/{age}_0_0_2017{i:04d}.jpg.chip.jpg"
        Image.new("RGB", (200, 200), (i * 5 % 255, 80, 120)).save(root / "utkface" / name)
        rows.append((name, age, 0, 0))
    pd.DataFrame(rows, columns=["file", "age", "gender", "race"]).to_csv(root / "utkface" / "labels.csv", index=False)
    return root, ages


def test_convert_writes_the_blitz_layout(fake_utkface, tmp_path):
    root, ages = fake_utkface
    out = tmp_path / "out"
    summary = convert("age-bins", root, out, seed=3)
    assert summary["images"] == len(ages) and summary["train"] + summary["val"] + summary["test"] == len(ages)
    assert summary["ages_over_100_in_90_100"] == sum(a >= 100 for a in ages) >= 4
    sources = pd.read_csv(out / "sources.csv")
    labelled = pd.concat([pd.read_csv(out / f) for f in ("train.csv", "val.csv", "test_truth.csv")])
    merged = labelled.merge(sources, on="ImageID")
    assert len(merged) == len(ages) and all(merged["age_x"] == [age_bin(a) for a in merged["age_y"]])
    for row in merged.itertuples():  # the photo is copied byte for byte, under its split
        assert (out / row.split / f"{row.ImageID}.jpg").read_bytes() == (root / row.source).read_bytes()
    sample = pd.read_csv(out / "sample_submission.csv", keep_default_na=False)
    assert list(sample["ImageID"]) == list(pd.read_csv(out / "test_truth.csv")["ImageID"]) and set(sample["age"]) == {""}
    # stratified: every bin with at least 3 photos has photos in every split
    counts = merged.groupby(["age_x", "split"]).size().unstack(fill_value=0)
    assert (counts[counts.sum(1) >= 3] > 0).all().all()


def test_utkface_split_keeps_the_age_gender_test_faces(fake_utkface, tmp_path, ray_local):
    """`--split utkface`: every image lands in the split the age-gender task reads it in, so the
    age-bins classifier and the binned age regressor are scored on the same test faces."""
    root, ages = fake_utkface
    out = tmp_path / "out"
    convert("age-bins", root, out, seed=0, split="utkface")
    sources = pd.read_csv(out / "sources.csv")
    for split in ("train", "val", "test"):
        read = get_format("age-gender").read(root / "utkface", split)
        expected = {f"utkface/{f}" for f in read.dataset.to_pandas()["file"]}
        assert set(sources.loc[sources["split"] == split, "source"]) == expected
    with pytest.raises(FacelabError, match="unknown split"):
        convert("age-bins", root, tmp_path / "bad", split="random")


def test_convert_is_seeded(fake_utkface, tmp_path):
    root, _ = fake_utkface
    convert("age-bins", root, tmp_path / "a", seed=1)
    convert("age-bins", root, tmp_path / "b", seed=1)
    convert("age-bins", root, tmp_path / "c", seed=2)
    same = [(tmp_path / x / "sources.csv").read_text() for x in "abc"]
    assert same[0] == same[1] != same[2]


def test_missing_utkface_is_an_error(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(FacelabError, match="labels.csv"):
        convert("age-bins", tmp_path / "root", tmp_path / "out")


@pytest.mark.realdata
def test_real_utkface_sample_reads_back(data_root, tmp_path, ray_local):
    out = tmp_path / "age-bins"
    summary = convert("age-bins", data_root, out, seed=0, n=90)
    assert abs(summary["images"] - 90) <= len(AGE_BINS)  # per-bin rounding
    fmt = get_format("age-bins")
    for split in ("train", "val"):
        read = fmt.read(out, split)
        assert not read.bad and read.dataset.count() == summary[split]
        assert set(read.dataset.select_columns(["label"]).to_pandas()["label"]) <= set(AGE_BINS)
    assert np.isclose(summary["train"] / summary["images"], 4 / 9, atol=0.1)
