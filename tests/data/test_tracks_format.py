"""MCS2019 layout: frames CSV + row-aligned .npy, tracks in track order, TPR@FPR scoring."""


import numpy as np
import pandas as pd
import pytest

from facelab import metrics
from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.tracks import DIM, LAYOUTS, SUBMISSION, TRUTH, mean_baseline

FMT = get_format("tracks")
TRAIN = LAYOUTS["train"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("tracks"), n=10, seed=1)



def _frames(data):
    return pd.read_csv(data / TRAIN.frames, dtype=str, keep_default_na=False)


def _tracks_by_hand(data, layout):
    """Each track's frames (frame_id order), assembled straight from the files."""
    frames = pd.read_csv(data / layout.frames)
    matrix = np.load(data / layout.descriptors)
    order = pd.read_csv(data / layout.order)
    return order, [matrix[frames.index[frames.track_id == t][np.argsort(frames.frame_id[frames.track_id == t])]]
                   for t in order.track_id]


def _person_means(truth):
    gt = pd.read_csv(truth / "gt_df.csv")
    refs = np.load(truth / "gt_descriptors.npy")
    return {p: mean_baseline(refs[gt.index[gt.person_id == p]]) for p in gt.person_id.unique()}


def test_synthetic_layout(synth):
    frames = pd.read_csv(synth / TRAIN.frames)
    assert list(frames.columns) == ["crop_path", "warp_path", "person_id", "video_id", "track_id", "frame_id",
                                    "bbox_x", "bbox_y", "bbox_w", "bbox_h",
                                    *[f"{a}{k}" for k in range(5) for a in "xy"], "is_val"]
    matrix = np.load(synth / TRAIN.descriptors)
    assert matrix.dtype == np.float32 and matrix.shape == (len(frames), DIM)
    norms = np.linalg.norm(matrix, axis=1)  # descriptors keep their norm: low = a low-quality frame
    assert ((norms > 2.9) & (norms < 4.6) | (norms > 5.9) & (norms < 8.1)).all() and (norms < 5).any()
    assert np.allclose(np.linalg.norm(np.load(synth / TRAIN.references[1]), axis=1), 1, atol=1e-5)
    assert frames.groupby("track_id").size().eq(10).all() and frames.is_val.any() and not frames.is_val.all()
    assert len(frames.person_id.iloc[0]) == 32
    assert list(pd.read_csv(synth / TRAIN.order).columns) == ["track_id", "person_id"]
    assert "person_img_id" in pd.read_csv(synth / "train_gt_df.csv").columns
    assert list(pd.read_csv(synth / "track_order_df.csv").columns) == ["track_id"]
    assert "person_id" not in pd.read_csv(synth / "test_df.csv").columns
    for name in ("track_order_df.csv", "gt_df.csv", "gt_descriptors.npy"):
        assert (synth / TRUTH / name).is_file()


def test_synthesis_is_seeded(tmp_path):
    a = FMT.synthesize(tmp_path / "a", n=4, seed=3)
    b = FMT.synthesize(tmp_path / "b", n=4, seed=3)
    c = FMT.synthesize(tmp_path / "c", n=4, seed=4)
    assert np.array_equal(np.load(a / TRAIN.descriptors), np.load(b / TRAIN.descriptors))
    assert (a / TRAIN.frames).read_text() == (b / TRAIN.frames).read_text() != (c / TRAIN.frames).read_text()


def test_read_gives_tracks_in_track_order(synth, ray_local):
    read = FMT.read(synth, "train")
    tracks = read.dataset.to_pandas()
    assert read.bad == []
    assert list(tracks.columns) == ["_file", "_row", "track_id", "person_id", "is_val", "frames"]
    order, expected = _tracks_by_hand(synth, TRAIN)
    assert tracks.track_id.tolist() == order.track_id.tolist()
    assert tracks.person_id.tolist() == order.person_id.tolist()
    assert tracks._row.tolist() == list(range(2, len(order) + 2))
    for got, want in zip(tracks.frames, expected):
        assert got.dtype == np.float32 and got.shape == (10, DIM) and np.array_equal(got, want)
    val_people = set(pd.read_csv(synth / TRAIN.frames).query("is_val").person_id)
    assert tracks.is_val.tolist() == [p in val_people for p in tracks.person_id]
    test = FMT.read(synth, "test").dataset.to_pandas()
    assert len(test) == len(pd.read_csv(synth / "track_order_df.csv")) and set(test.person_id) == {""}
    people, refs = FMT.references(synth)
    assert refs.shape == (len(people), DIM) and set(people) == set(order.person_id)


def test_scores_order_submissions(tmp_path):
    data = FMT.synthesize(tmp_path / "d", n=60, seed=0)  # numpy only: no Ray needed
    order, frames = _tracks_by_hand(data, LAYOUTS["test"])
    truth = pd.read_csv(data / TRUTH / "track_order_df.csv")
    means = _person_means(data / TRUTH)
    rng = np.random.default_rng(0)
    submissions = {
        "oracle": [means[p] for p in truth.person_id],
        "baseline": [mean_baseline(f) for f in frames],
        "random": list(rng.normal(size=(len(order), DIM))),
    }
    scores = {}
    for name, vectors in submissions.items():
        shuffled = pd.DataFrame({"track_id": order.track_id, "descriptor": vectors}).sample(frac=1, random_state=1)
        path = FMT.write_submission(shuffled, tmp_path / name, data=data)
        assert path.name == SUBMISSION and np.load(path).shape == (len(order), DIM)
        scores[name] = FMT.score(path, data / TRUTH)["tpr@fpr=1e-04"]
    assert scores["oracle"] >= 0.95
    assert 0.4 <= scores["baseline"] <= scores["oracle"] - 0.1
    assert scores["random"] <= 0.1


def test_hand_checked_score(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    pd.DataFrame({"track_id": ["t1", "t2"], "person_id": ["A", "B"]}).to_csv(truth / "track_order_df.csv", index=False)
    pd.DataFrame({"person_id": ["A", "B"]}).to_csv(truth / "gt_df.csv", index=False)
    e1, e2 = np.eye(DIM, dtype=np.float32)[:2]
    np.save(truth / "gt_descriptors.npy", np.stack([e1, e2]))
    # t1 = e1: d(t1, A) = 0, d(t1, B) = sqrt 2; t2 halfway: d(t2, A) = d(t2, B) = sqrt(2 - sqrt 2)
    # so one positive beats every negative, the other ties with one: TPR at FPR 0 is 1/2
    sub = FMT.write_submission(pd.DataFrame({"track_id": ["t1", "t2"], "descriptor": [e1, (e1 + e2) / np.sqrt(2)]}),
                               tmp_path / "agg.npy")
    result = FMT.score(sub, truth)
    assert result["tpr@fpr=1e-06"] == 0.5 and result["n_positive"] == 2 and result["n_negative"] == 2
    distances = metrics.pairwise_l2(np.load(sub), np.stack([e1, e2]))
    assert distances[1, 0] == pytest.approx(np.sqrt(2 - np.sqrt(2)), abs=1e-6)


def test_npy_csv_mismatch_and_wrong_dim(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    matrix = np.load(data / TRAIN.descriptors)
    np.save(data / TRAIN.descriptors, matrix[:-1])
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    message = str(err.value)
    assert str(data / TRAIN.descriptors) in message and str(data / TRAIN.frames) in message
    assert f"has {len(matrix) - 1} rows but" in message
    np.save(data / TRAIN.descriptors, matrix[:, :128])
    with pytest.raises(DataError, match="has dimension 128, expected 512"):
        FMT.read(data, "train")


def test_nan_frame_is_named_by_csv_row_and_skip_bad_keeps_the_rest(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    matrix = np.load(data / TRAIN.descriptors)
    matrix[7, 3] = np.nan
    np.save(data / TRAIN.descriptors, matrix)
    with pytest.raises(DataError) as err:
        FMT.read(data, "train")
    assert str(err.value).startswith(f"{data / TRAIN.frames}: row 9: field 'descriptor': row 7 of")
    read = FMT.read(data, "train", skip_bad=True)
    assert [(b.file, b.row, b.field) for b in read.bad] == [(str(data / TRAIN.frames), 9, "descriptor")]
    track = pd.read_csv(data / TRAIN.frames).track_id[7]
    sizes = {r["track_id"]: len(r["frames"]) for r in read.dataset.iter_rows()}
    assert sizes[track] == 9 and sum(sizes.values()) == len(matrix) - 1


def test_bad_ids_and_tracks(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    frames = _frames(data)
    frames.loc[3, "frame_id"] = "x"
    frames.to_csv(data / TRAIN.frames, index=False)
    order = pd.read_csv(data / TRAIN.order)
    order.loc[len(order)] = ["f" * 32, order.person_id[0]]
    order.loc[1, "person_id"] = order.person_id[0] if order.person_id[1] != order.person_id[0] else "someone"
    order.to_csv(data / TRAIN.order, index=False)
    read = FMT.read(data, "train", skip_bad=True)
    found = {(b.file.rsplit("/", 1)[1], b.row, b.field) for b in read.bad}
    assert found == {(TRAIN.frames, 5, "frame_id"), (TRAIN.order, 3, "person_id"),
                     (TRAIN.order, len(order) + 1, "track_id")}
    assert any("has no frames" in b.reason for b in read.bad)
    assert read.dataset.count() == len(order) - 2


def test_missing_column(synth, tmp_path, ray_local, data_copy):
    data = data_copy
    _frames(data).drop(columns=["frame_id"]).to_csv(data / TRAIN.frames, index=False)
    with pytest.raises(DataError, match="row 1: field 'frame_id': missing column"):
        FMT.read(data, "train")


def test_bad_submissions(synth, tmp_path):
    order = pd.read_csv(synth / "track_order_df.csv")
    vectors = [np.ones(DIM, np.float32) / np.sqrt(DIM)] * len(order)
    with pytest.raises(DataError, match=r"track_order_df.csv: row 3: field 'track_id': no descriptor for track"):
        FMT.write_submission(pd.DataFrame({"track_id": order.track_id.drop(1), "descriptor": vectors[1:]}),
                             tmp_path / "a", data=synth)
    with pytest.raises(DataError, match="row 1: field 'descriptor': track .* has 10 values, expected 512"):
        FMT.write_submission(pd.DataFrame({"track_id": ["t"], "descriptor": [np.ones(10)]}), tmp_path / "b", data=synth)
    matrix = np.stack(vectors)
    matrix[2, 0] = np.nan
    np.save(tmp_path / "nan.npy", matrix)
    with pytest.raises(DataError, match=rf"nan.npy: row 3: field 'descriptor': track '{order.track_id[2]}'"):
        FMT.score(tmp_path / "nan.npy", synth / TRUTH)
    np.save(tmp_path / "short.npy", matrix[:-1])
    with pytest.raises(DataError, match="short.npy: has .* rows but .*track_order_df.csv has"):
        FMT.score(tmp_path / "short.npy", synth / TRUTH)
