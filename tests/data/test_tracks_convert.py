"""ORL -> MCS2019 tracks: the frame augmentations, and (with the real data) a small conversion read
back through the format, split by person, with real identity signal in its dlib descriptors."""

import numpy as np
import pandas as pd
import pytest

from facelab.converters.tracks import BAD_SHARE, augment, convert
from facelab.formats import get_format
from facelab.formats.tracks import LAYOUTS, TRUTH, mean_baseline, split_pairs, track_frames
from facelab.metrics import tpr_at_fpr

FMT = get_format("tracks")


def _face():
    """A smooth 112x92 greyscale test card (no real data needed)."""
    y, x = np.mgrid[0:112, 0:92]
    return (127 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0)).astype(np.uint8)


def test_augment_is_seeded_and_grows_with_severity():
    face = _face()
    a = augment(face, 0.5, np.random.default_rng(1))
    assert a.shape == face.shape and a.dtype == np.uint8
    assert np.array_equal(a, augment(face, 0.5, np.random.default_rng(1)))
    change = {s: np.mean([np.abs(augment(face, s, np.random.default_rng(i)).astype(float) - face).mean()
                          for i in range(8)]) for s in (0.0, 0.3, 1.0)}
    assert change[0.0] < change[0.3] < change[1.0] and change[1.0] > 3 * change[0.0]
    assert 0.2 < BAD_SHARE[0] / sum(BAD_SHARE) < 0.5  # about a third of the frames are bad on average


@pytest.mark.realdata
def test_orl_conversion_reads_back_with_identity_signal(data_root, ray_local, tmp_path):
    if not (data_root / "orl_faces" / "s1" / "1.pgm").is_file():
        pytest.skip("ORL faces not present")
    out = tmp_path / "orl"
    summary = convert(data_root, out, n=8, tracks_per_photo=1, test_people=3, val_people=2, actors=2)
    assert summary["people"] == {"train": 5, "val": 2, "test": 3}
    assert summary["tracks"] == {"train": 35, "test": 21} and summary["frames"] == 560
    train = FMT.read(out, "train")
    tracks = train.dataset.to_pandas()
    assert train.bad == [] and len(tracks) == 35
    assert all(f.shape == (10, 128) for f in tracks.frames)
    assert tracks.groupby("person_id").is_val.nunique().eq(1).all() and tracks.is_val.sum() == 14
    people, refs = FMT.references(out)
    assert refs.shape == (15, 128) and np.allclose(np.linalg.norm(refs, axis=1), 1, atol=1e-5)
    assert not set(people) & set(pd.read_csv(out / TRUTH / "gt_df.csv").person_id)
    frames = pd.read_csv(out / LAYOUTS["train"].frames)
    assert frames.crop_path.str.match(r"orl_faces/s\d+/\d+\.pgm").all() and (frames.bbox_w == 92).all()
    # real faces: the mean baseline puts a test track nearer its own person's photos than others'
    test = track_frames(out, "test")
    truth = pd.read_csv(out / TRUTH / "track_order_df.csv").set_index("track_id").person_id
    test_people, test_refs = FMT.references(out, "test")
    positive, negative = split_pairs(np.stack([mean_baseline(f) for f in test.values()]),
                                     truth[list(test)].to_numpy(), test_refs, test_people)
    assert np.median(positive) < np.median(negative)
    assert tpr_at_fpr(positive, negative, (0.1,))["tpr@fpr=1e-01"] > 0.5
