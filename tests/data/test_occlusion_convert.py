"""Occlusion data from real UTKFace faces: FaceOcclusion is exactly the occluded share of the face
hull, checked against independent computations, and the layout reads as the challenge's."""

import math

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as PolygonPath
from PIL import Image
from scipy.spatial import ConvexHull

from facelab.converters import convert
from facelab.converters.occluders import SIZE, FaceGeometry, hull_mask, occlude, occluded_fraction, polygon_mask
from facelab.formats import get_format
from facelab.formats.occlusion import FILES, IMAGES

N = 12  # train rows; the converter adds 0.3 N test rows


def _pixel_centres() -> np.ndarray:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(float)


def _inside(polygon: np.ndarray) -> np.ndarray:
    """Pixels whose centre lies inside a polygon (matplotlib's point-in-polygon, not OpenCV's fill)."""
    return PolygonPath(polygon).contains_points(_pixel_centres()).reshape(SIZE, SIZE)


def test_the_fraction_of_a_disc_under_a_half_plane_bar_is_one_half():
    """The rasterised hull and occluder against geometry and an independent point-in-polygon fill."""
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    disc = np.stack([112 + 60 * np.cos(t), 112 + 60 * np.sin(t)], 1)
    geometry = FaceGeometry.from_points(disc, "disc")
    left_half = np.array([[40, 40], [112, 40], [112, 184], [40, 184]], float)
    fraction = occluded_fraction(hull_mask(geometry), polygon_mask([left_half]))
    independent = (_inside(disc) & _inside(left_half)).sum() / _inside(disc).sum()
    assert fraction == pytest.approx(0.5, abs=0.01)
    assert fraction == pytest.approx(independent, abs=0.005)


@pytest.mark.parametrize("kind", ["bar", "blob", "hand", "sunglasses", "none"])
def test_drawn_occluders_paint_their_mask_and_report_its_share(kind):
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    geometry = FaceGeometry.from_points(np.stack([112 + 60 * np.cos(t), 112 + 75 * np.sin(t)], 1), "disc")
    geometry.eyes = np.array([[88.0, 95.0], [136.0, 95.0]])
    image = np.full((SIZE, SIZE, 3), 128, np.uint8)
    painted, mask, fraction = occlude(image, geometry, kind, np.random.default_rng(4))
    hull = hull_mask(geometry)
    assert fraction == (hull & mask).sum() / hull.sum()
    assert (painted[~mask] == 128).all() and (kind == "none") == (fraction == 0)


@pytest.fixture(scope="module")
def converted(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("occlusion-real")
    summary = convert("occlusion", data_root, out, n=N, seed=3)
    sources = pd.read_csv(out / "sources.csv")
    labels = pd.concat([pd.read_csv(out / FILES["train"], sep=" "), pd.read_csv(out / "test_truth.csv", sep=" ")])
    return out, summary, sources.merge(labels, on="filename"), data_root / "utkface"


def _masks(out, filename):
    levels = np.asarray(Image.open(out / "masks" / filename.replace(".jpg", ".png")))
    return np.isin(levels, (85, 255)), np.isin(levels, (170, 255))


@pytest.mark.realdata
def test_layout_and_counts(converted, ray_local):
    out, summary, rows, _ = converted
    assert summary["rows"] == {"train": N, "test": round(0.3 * N)}
    assert (out / FILES["train"]).read_text().splitlines()[0] == "filename FaceOcclusion gender"
    assert (out / FILES["test"]).read_text().splitlines()[0] == "filename"
    fmt = get_format("occlusion")
    for split in ("train", "test"):
        read = fmt.read(out, split)
        assert read.bad == [] and read.dataset.count() == summary["rows"][split]
    train_faces = set(rows.loc[rows["split"] == "train", "source"])
    assert not train_faces & set(rows.loc[rows["split"] == "test", "source"])  # no face in both splits
    with Image.open(out / IMAGES / rows["filename"][0]) as image:
        assert image.size == (SIZE, SIZE)


@pytest.mark.realdata
def test_gender_is_utkface_label_in_challenge_convention(converted):
    _, _, rows, _ = converted
    utk_gender = rows["source"].map(lambda f: int(f.split("/")[-1].split("_")[1]))  # 0 male, 1 female
    assert ((rows["gender"] > 0.5) == (utk_gender == 0)).all()


@pytest.mark.realdata
def test_fraction_is_exactly_the_masks_share(converted):
    out, _, rows, _ = converted
    for row in rows.itertuples():
        hull, occluder = _masks(out, row.filename)
        assert hull.sum() > 0.2 * SIZE * SIZE
        assert row.FaceOcclusion == pytest.approx((hull & occluder).sum() / hull.sum(), abs=1e-6)
        assert row.occluder != "none" or row.FaceOcclusion == 0  # (a drawn occluder may miss the face)


@pytest.mark.realdata
def test_fraction_against_an_independent_hull_and_the_drawn_pixels(converted):
    """Recompute the face hull from the source face (mediapipe mesh, scipy hull, matplotlib fill)
    and check that the occluder mask is where the picture really changed."""
    from facelab.faces import FaceMesh

    out, _, rows, utk = converted
    mesh = FaceMesh()
    checked = 0
    for row in rows[(rows["hull"] == "mesh") & (rows["occluder"] != "none")].itertuples():
        source = cv2.resize(np.asarray(Image.open(utk / row.source).convert("RGB")), (SIZE, SIZE),
                            interpolation=cv2.INTER_CUBIC)
        points = mesh(np.pad(source, ((56, 56), (56, 56), (0, 0))))[0][:, :2] - 56
        hull = _inside(points[ConvexHull(points).vertices])
        _, occluder = _masks(out, row.filename)
        assert row.FaceOcclusion == pytest.approx((hull & occluder).sum() / hull.sum(), abs=0.01)
        written = np.asarray(Image.open(out / IMAGES / row.filename).convert("L"), float)
        before = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY).astype(float)
        change = np.abs(written - before)
        inner = cv2.erode(occluder.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        outer = ~cv2.dilate(occluder.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert change[outer].mean() < 6  # JPEG noise only
        if inner.sum() > 200:
            assert change[inner].mean() > change[outer].mean()
        checked += 1
    assert checked >= N // 2


@pytest.mark.realdata
def test_grey_share(converted):
    from facelab.vision import is_grey, load_image

    out, summary, rows, _ = converted
    grey = np.array([is_grey(load_image(out / IMAGES / f)) for f in rows["filename"]])
    assert (grey == rows["grey"].to_numpy(bool)).all()
    assert (rows["filename"].str.startswith("database2/") == rows["grey"]).all()
    expected = round(0.14 * N) + round(0.14 * round(0.3 * N))
    assert grey.sum() == expected and math.isclose(summary["grey_share"], expected / len(rows), abs_tol=1e-4)
