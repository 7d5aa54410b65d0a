"""ORL + UTKFace -> real crowds in the Blitz face-recognition layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from facelab.converters import convert
from facelab.converters.crowd import face_tile
from facelab.formats import get_format
from facelab.formats.crowd import N_FACES, SIZE, TILE, tiles
from facelab.formats.images import load_rgb

FMT = get_format("crowd")


@pytest.fixture(scope="module")
def crowds(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("crowd-real")
    summary = convert("crowd", data_root, out, seed=3, n=3)
    return out, summary


def _person(source: str) -> str | None:
    """The ORL person of a source photo (`orl_faces/s7/3.pgm` -> s7); None for UTKFace."""
    parts = source.split("/")
    return parts[1] if parts[0] == "orl_faces" else None


@pytest.mark.realdata
def test_layout_sizes_and_greyscale(crowds, ray_local):
    out, summary = crowds
    assert summary["crowds"] == 3 and summary["orl_people_per_crowd"] + summary["utkface_tiles_per_crowd"] == N_FACES
    truth = pd.read_csv(out / "truth.csv", dtype={"ImageID": str})
    assert list(truth.columns) == ["ImageID", "target"] and len(truth) == 3
    assert truth["target"].between(0, N_FACES - 1).all()
    names = sorted(p.name for p in (out / "target").glob("*.jpg"))
    assert names == sorted(p.name for p in (out / "missing").glob("*.jpg")) == sorted(f"{i}.jpg" for i in truth["ImageID"])
    read = FMT.read(out, "test")
    assert read.dataset.count() == 3 and not read.bad
    for name in names:
        target, missing = load_rgb(out / "target" / name), load_rgb(out / "missing" / name)
        assert target.shape == (SIZE, SIZE, 3) and missing.shape == (TILE, TILE, 3)
        for image in (target, missing):  # grey: the channels agree up to JPEG rounding
            spread = image.max(axis=2).astype(int) - image.min(axis=2)
            assert np.percentile(spread, 99.9) <= 3
    assert FMT.score(out / "truth.csv", out / "truth.csv")["accuracy"] == 1.0


@pytest.mark.realdata
def test_the_missing_person_is_in_the_grid_by_another_photo(crowds, data_root):
    out, summary = crowds
    truth = pd.read_csv(out / "truth.csv", dtype={"ImageID": str}).set_index("ImageID")["target"]
    sources = pd.read_csv(out / "sources.csv", dtype={"ImageID": str})
    for image_id, rows in sources.groupby("ImageID"):
        by_tile = rows.set_index("tile")["source"]
        grid = by_tile.drop(-1)
        assert sorted(grid.index) == list(range(N_FACES)) and grid.is_unique
        people = list(grid.map(_person).dropna())
        assert len(people) == len(set(people)) == summary["orl_people_per_crowd"]  # one photo per person
        missing, answer = by_tile[-1], grid[truth[image_id]]
        assert _person(missing) and _person(missing) == _person(answer) and missing != answer
        # the pixels say the same: the answer tile is the person's grid photo, the missing image the other one
        crowd = tiles(load_rgb(out / "target" / f"{image_id}.jpg"))[..., 0].astype(float)
        shown = load_rgb(out / "missing" / f"{image_id}.jpg")[..., 0].astype(float)
        assert np.abs(crowd[truth[image_id]] - face_tile(data_root / answer)).mean() < 3
        assert np.abs(shown - face_tile(data_root / missing)).mean() < 3
        assert np.abs(shown - crowd[truth[image_id]]).mean() > 5
        assert all(np.abs(crowd[k] - shown).mean() > 5 for k in range(N_FACES))  # no copy of it in the crowd


@pytest.mark.realdata
def test_seeded(crowds, data_root, tmp_path):
    convert("crowd", data_root, tmp_path / "again", seed=3, n=1)
    first = pd.read_csv(crowds[0] / "sources.csv", dtype={"ImageID": str})
    again = pd.read_csv(tmp_path / "again" / "sources.csv", dtype={"ImageID": str})
    assert again.equals(first[first["ImageID"] == first["ImageID"].iloc[0]].reset_index(drop=True))
    convert("crowd", data_root, tmp_path / "other", seed=4, n=1)
    assert not pd.read_csv(tmp_path / "other" / "sources.csv")["source"].equals(again["source"])
