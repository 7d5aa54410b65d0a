"""MCS2019 tracks (seed 003): the aggregator's parts checked by hand, then the shared fit (a 1-trial
Tune sweep through Ray Train on synthetic tracks) -> submit -> score, against the mean baseline.
A sweep of several trials, killed and resumed, is tests/code/test_sweep_survives.py's."""

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from facelab.formats import get_format
from facelab.formats.tracks import LAYOUTS, TRUTH, mean_baseline, norm_weighted_mean, track_frames
from facelab.store import ModelStore
from facelab.aggregator.data import POWERS, _auto_power
from facelab.aggregator.network import build_aggregator, pad_tracks
from facelab.aggregator.predictor import TrackPredictor
from facelab.aggregator.requests import AggregateRequest, MatchRequest, TrackRequest
from facelab.aggregator.training import contrastive_loss

torch = pytest.importorskip("torch")
FMT = get_format("tracks")


def _aggregator(quality="none", power=1.0, dim=6, pca=4, code=8, seed=0):
    torch.manual_seed(seed)
    model = build_aggregator({"dim": dim, "pca_fitted": pca, "code_size": code, "temperature": 1.0,
                              "quality": quality, "quality_power": power})
    with torch.no_grad():
        model.components.copy_(torch.linalg.qr(torch.randn(dim, pca))[0].T)
        model.encoder.weight.normal_()
        model.decoder.weight.normal_()
    return model.eval()


def test_pad_tracks_pads_masks_and_cuts():
    tracks = [np.ones((2, 3)), np.full((4, 3), 2.0)]
    frames, mask = pad_tracks(tracks, 3)
    assert frames.shape == (2, 3, 3) and frames.dtype == np.float32
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert frames[0, 2].tolist() == [0, 0, 0] and (frames[1] == 2).all()


def test_contrastive_loss_hand_checked():
    e1, e2 = torch.eye(2)
    config = {"centre": 1.0, "margin": 0.1, "neg_weight": 2.0}  # tp = 0.9, tn = 1.1
    # the track sits on its own reference (d = 0) and sqrt 2 from the other: both hinges are slack
    loss = contrastive_loss(e1[None], torch.stack([e1, e2]), torch.tensor([[True, False]]), config)
    assert float(loss) == pytest.approx(0.0, abs=1e-3)
    # the other way round: positive d = sqrt 2 -> sqrt 2 - 0.9; negative d = 0 -> 2 * 1.1
    loss = contrastive_loss(e1[None], torch.stack([e1, e2]), torch.tensor([[False, True]]), config)
    assert float(loss) == pytest.approx(np.sqrt(2) - 0.9 + 2 * 1.1, abs=1e-3)


def test_aggregator_is_a_set_function_of_the_real_frames():
    model = _aggregator()
    frames = torch.randn(1, 5, 6)
    mask = torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        out = model(frames, mask)
        shuffled = model(frames[:, torch.randperm(5)], mask)
        padded = model(torch.cat([frames, 9 * torch.randn(1, 3, 6)], 1), torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], 1))
        scaled = model(frames * 3, mask)  # without quality weighting the frames' norms do not count
    assert out.shape == (1, 6) and float(out.norm()) == pytest.approx(1.0, abs=1e-5)
    for other in (shuffled, padded, scaled):
        assert torch.allclose(out, other, atol=1e-5)


def test_quality_weighting_discounts_low_norm_frames():
    good = torch.randn(1, 4, 6) * 7
    bad = torch.randn(1, 1, 6) * 0.5  # one noisy, low-norm frame
    mask5, mask4 = torch.ones(1, 5, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    shifts = {}
    for quality in ("none", "norm"):
        model = _aggregator(quality=quality, power=4.0)
        with torch.no_grad():
            shifts[quality] = float((model(torch.cat([good, bad], 1), mask5) - model(good, mask4)).norm())
    assert shifts["norm"] < 1e-3 < shifts["none"]


def test_high_quality_powers_stay_finite_and_keep_the_longest_frames():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(5, 6)) * np.array([0.02, 0.03, 0.05, 0.04, 0.01])[:, None]  # all short
    assert np.allclose(norm_weighted_mean(frames, 0.0), mean_baseline(frames), atol=1e-6)
    norms = np.linalg.norm(frames, axis=1)
    longest = frames[norms.argmax()] / norms.max()
    assert np.isfinite(norm_weighted_mean(frames, 64.0)).all()
    assert float(norm_weighted_mean(frames, 64.0) @ longest) > 0.99 > float(mean_baseline(frames) @ longest)
    model = _aggregator(quality="norm", power=64.0)
    with torch.no_grad():
        out = model(torch.from_numpy(frames[None].astype(np.float32)), torch.ones(1, 5, dtype=torch.bool))
    assert torch.isfinite(out).all() and float(out.norm()) == pytest.approx(1.0, abs=1e-5)


def _people_tracks(noisy_low_norm: bool, seed=0):
    """20 people, 3 noisy references each, 4 tracks of 8 frames: half the frames are the person
    with noise; the other half pure noise, shorter than the good ones when `noisy_low_norm`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 16))
    refs = np.repeat(centres, 3, axis=0) + rng.normal(size=(60, 16))
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    rows = []
    for person in range(20):
        for _ in range(4):
            good = centres[person] + rng.normal(size=(4, 16))
            bad = rng.normal(size=(4, 16)) * (0.2 if noisy_low_norm else 1.0)
            frames = np.concatenate([good, bad])
            if not noisy_low_norm:
                frames /= np.linalg.norm(frames, axis=1, keepdims=True)
            rows.append({"frames": frames, "person_index": person})
    tracks = pd.DataFrame(rows)
    return tracks, tracks.person_index.to_numpy(), refs, np.repeat(np.arange(20), 3)


def test_auto_power_is_high_when_short_frames_are_noise_and_zero_on_unit_frames():
    assert _auto_power(*_people_tracks(noisy_low_norm=True)) >= 1.0
    assert _auto_power(*_people_tracks(noisy_low_norm=False)) == 0.0


def test_request_schemas():
    TrackRequest(frames=[[0.1, 0.2], [0.3, 0.4]])
    TrackRequest(tracks=[[[0.1, 0.2]], [[0.3, 0.4], [0.5, 0.6]]])
    for bad in ({}, {"frames": [[0.1, 0.2], [0.3]]}, {"frames": [[0.1, float("nan")]]},
                {"frames": [[0.1]], "tracks": [[[0.1]]]}, {"frames": []}):
        with pytest.raises(ValidationError):
            TrackRequest(**bad)
    with pytest.raises(ValidationError, match="same dimension"):
        MatchRequest(frames=[[0.1, 0.2]], references=[[0.1, 0.2, 0.3]])
    with pytest.raises(ValidationError, match="one reference id per reference"):
        MatchRequest(frames=[[0.1, 0.2]], references=[[0.1, 0.2]], reference_ids=["a", "b"])


# --- Ray Train on synthetic tracks ---------------------------------------------------------------

@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared tracks fit (fit_cases.py)."""
    return task_fit("tracks")


@pytest.fixture(scope="module")
def tracks_data(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def trained(fit):
    return fit.store, fit.run_id, fit.metrics


def _baseline_score(data, tmp_path):
    tracks = track_frames(data, "test")
    frame = pd.DataFrame({"track_id": list(tracks), "descriptor": [mean_baseline(f) for f in tracks.values()]})
    return FMT.score(FMT.write_submission(frame, tmp_path / "baseline", data=data), data / TRUTH)


def test_training_stores_the_aggregator_with_its_validation_comparison(trained):
    store, run_id, metrics = trained
    run = ModelStore(store).load("tracks", run_id)
    assert {"model.pt", "config.json", "history.csv", "val_roc.png", "thresholds.json"} <= {
        p.name for p in run.model_dir.iterdir()}
    config = json.loads((run.model_dir / "config.json").read_text())
    assert config["dim"] == 512 and config["pca_fitted"] <= 200 and config["max_frames"] == 10
    assert metrics["val_people"] >= 2 and metrics["train_people"] >= 2
    assert config["quality_power"] in POWERS and metrics["auto_quality_power"] == config["quality_power"]
    assert 0 <= metrics["val_weighted_mean_tpr@fpr=1e-03"] <= 1
    # the learned aggregator (norm-weighted codes) is at least as good as the plain mean on unseen people
    assert metrics["val_tpr@fpr=1e-03"] >= metrics["val_baseline_tpr@fpr=1e-03"]


def test_submission_in_track_order_beats_the_baseline(fit, tracks_data, tmp_path):
    summary = fit.submission()
    written = np.load(summary["submission"])
    order = pd.read_csv(tracks_data / LAYOUTS["test"].order)
    assert written.shape == (len(order), 512) and summary["bad_rows"] == 0
    assert np.allclose(np.linalg.norm(written, axis=1), 1, atol=1e-4)
    scores = FMT.score(summary["submission"], tracks_data / TRUTH)
    baseline = _baseline_score(tracks_data, tmp_path)
    assert scores["tpr@fpr=1e-04"] >= baseline["tpr@fpr=1e-04"] > 0.2
    # the rows follow the track order: shuffling them breaks the score
    np.save(tmp_path / "shuffled.npy", written[np.random.default_rng(0).permutation(len(written))])
    assert FMT.score(tmp_path / "shuffled.npy", tracks_data / TRUTH)["tpr@fpr=1e-04"] < 0.1
    plots = FMT.plots(summary["submission"], tracks_data / TRUTH, tmp_path / "plots")
    assert [p.name for p in plots] == ["roc.png"] and plots[0].stat().st_size > 0


def test_predictor_actions(trained, tracks_data):
    store, run_id, _ = trained
    predictor = TrackPredictor(str(ModelStore(store).load("tracks", run_id).model_dir))
    tracks = list(track_frames(tracks_data, "test").values())[:3]
    batch = predictor({"frames": np.array(tracks, dtype=object)})["descriptor"]
    one = predictor.aggregate(AggregateRequest(frames=tracks[0].tolist()))
    assert one["frames"] == 10 and np.allclose(one["descriptor"], batch[0], atol=1e-5)
    refs = [batch[1].tolist(), batch[0].tolist()]
    match = predictor.match(MatchRequest(frames=tracks[0].tolist(), references=refs, reference_ids=["b", "a"]))
    assert match["nearest"] == "a" and match["distances"][1] == pytest.approx(0.0, abs=1e-4)
    assert match["same"][1] and len(match["same"]) == 2 and match["threshold"]["fpr"] == 1e-4
    with pytest.raises(Exception, match="this model takes 512"):
        predictor.aggregate(AggregateRequest(frames=[[0.1] * 128]))
