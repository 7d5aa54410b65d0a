"""Verify (HexaFace): the threshold cross-validation on synthetic distances and codes, and the whole
task on a few real ORL people: fit, cached encodings, batch predictions scored, the Serve contract."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.errors import FacelabError
from facelab.face_codes import FileCodes
from facelab.tasks.verify import (
    Pairs,
    VerifyConfig,
    best_threshold,
    cross_validate_threshold,
    evaluate,
)

# --- synthetic: threshold selection and CV -------------------------------------------------------

def test_best_threshold_separates_and_sits_in_the_gap():
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 50)
    distance = np.where(same, rng.uniform(0.1, 0.4, 100), rng.uniform(0.6, 0.9, 100))
    threshold, accuracy = best_threshold(distance, same)
    assert accuracy == 1.0
    assert distance[same].max() < threshold < distance[~same].min()
    # the middle of the best plateau: halfway across the gap
    assert threshold == pytest.approx((distance[same].max() + distance[~same].min()) / 2)


def test_best_threshold_ties_and_infinite_distances():
    threshold, accuracy = best_threshold(np.array([0.5, 0.5, 0.5, 0.5]), np.array([True, False, True, False]))
    assert accuracy == 0.5  # a tie cannot be split
    threshold, accuracy = best_threshold(np.array([0.2, np.inf, 0.9]), np.array([True, True, False]))
    assert np.isfinite(threshold) and 0.2 < threshold < 0.9 and accuracy == pytest.approx(2 / 3)


def test_cross_validation_finds_the_bayes_threshold():
    """Gaussian distances, same ~ N(0.3, 0.08), different ~ N(0.7, 0.08): the best cut is 0.5 and the
    best accuracy Phi(2.5) = 0.994; a threshold chosen badly or compared the wrong way fails."""
    rng = np.random.default_rng(1)
    n = 4000
    same = rng.random(n) < 0.5
    distance = np.where(same, rng.normal(0.3, 0.08, n), rng.normal(0.7, 0.08, n))
    result = cross_validate_threshold(distance, same, np.arange(n) % 10 + 1)
    assert result["threshold"] == pytest.approx(0.5, abs=0.03)
    assert result["accuracy"] == pytest.approx(0.9938, abs=0.006)
    assert 0 < result["accuracy_std"] < 0.02 and len(result["fold_accuracy"]) == 10


def _clustered(rng, people: int, per_person: int, noise: float) -> tuple[FileCodes, np.ndarray]:
    centres = rng.normal(size=(people, 128)) / np.sqrt(128) * 1.2
    labels = np.repeat(np.arange(people), per_person)
    small = centres[labels] + noise * rng.normal(size=(len(labels), 128)) / np.sqrt(128)
    large = centres[labels] + noise * rng.normal(size=(len(labels), 128)) / np.sqrt(128)
    return FileCodes(small.astype(np.float32), large.astype(np.float32), np.zeros(len(labels), bool)), labels


def _all_pairs(labels: np.ndarray, folds: int) -> Pairs:
    a, b = np.triu_indices(len(labels), 1)
    person_fold = np.arange(labels.max() + 1) % folds + 1
    keep = person_fold[labels[a]] == person_fold[labels[b]]  # people-disjoint folds
    a, b = a[keep], b[keep]
    return Pairs([str(i) for i in range(len(labels))], a, b, labels[a] == labels[b], person_fold[labels[a]])


MEAN = VerifyConfig(model="mean").model_dump()


def test_evaluate_on_synthetic_codes_and_a_broken_encoder():
    rng = np.random.default_rng(2)
    codes, labels = _clustered(rng, people=20, per_person=5, noise=0.35)
    pairs = _all_pairs(labels, folds=5)
    good = evaluate(MEAN, pairs, codes)
    assert good["accuracy"] > 0.98 and good["no_face_images"] == 0
    broken = FileCodes(rng.permutation(codes.small), rng.permutation(codes.large), codes.whole)
    # an encoder that loses identity: every pair equally far; the best one can do is call all "different"
    assert evaluate(MEAN, pairs, broken)["accuracy"] < 0.9 * good["accuracy"]


def test_no_face_policy():
    rng = np.random.default_rng(3)
    codes, labels = _clustered(rng, people=4, per_person=3, noise=0.2)
    codes.whole[0] = True
    pairs = _all_pairs(labels, folds=2)
    strict = pairs.distances(codes, "mean", fallback_whole=False)
    loose = pairs.distances(codes, "mean", fallback_whole=True)
    touches = (pairs.a == 0) | (pairs.b == 0)
    assert np.isinf(strict[touches]).all() and np.isfinite(loose).all()
    assert np.array_equal(strict[~touches], loose[~touches])


# --- real ORL faces (a few people) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def orl_small(data_root, tmp_path_factory):
    from facelab.converters import convert

    out = tmp_path_factory.mktemp("verify-orl-small")
    convert("verify", data_root, out, seed=0, people=6, folds=3, n=8)
    return out


@pytest.fixture(scope="module")
def fitted(orl_small, ray_local, tmp_path_factory):
    from facelab.tasks import get_task

    task = get_task("verify")
    data = task.read_for_fit(orl_small)
    model_dir = tmp_path_factory.mktemp("verify-model")
    metrics = task.fit(dict(task.default_config), data, model_dir)
    return task, data, model_dir, metrics


@pytest.mark.realdata
def test_fit_on_orl(fitted):
    _, _, model_dir, metrics = fitted
    assert metrics["cv_accuracy"] >= 0.95 and metrics["fit_accuracy"] >= 0.95
    assert 0.3 < metrics["threshold"] < 0.8  # dlib's codes: same person well under 0.6
    assert metrics["no_face_images"] == 0
    spec = json.loads((model_dir / "verify.json").read_text())
    assert spec["detector"] == "hog" and spec["model"] == "mean" and spec["threshold"] == metrics["threshold"]
    assert (model_dir / "roc.png").stat().st_size > 0


@pytest.mark.realdata
def test_codes_are_cached_per_image(fitted):
    from facelab.face_codes import CoderSettings, encode_files

    _, data, _, _ = fitted
    pairs = Pairs.from_read(data["pairs"])
    again = encode_files(pairs.images, CoderSettings("hog"))
    assert again.encoded == 0 and len(pairs.images) < 2 * len(pairs.same)  # images shared by pairs, encoded once


@pytest.mark.realdata
def test_trial_agrees_with_fit(fitted):
    from facelab.face_codes import CoderSettings, encode_files
    from facelab.tasks.verify import TrialData

    task, data, _, metrics = fitted
    pairs = Pairs.from_read(data["pairs"])
    trial = TrialData(pairs, {"hog-j0-u1": encode_files(pairs.images, CoderSettings("hog"))})
    assert task.evaluate_config(task.default_config, trial)["accuracy"] == pytest.approx(metrics["cv_accuracy"])
    with pytest.raises(FacelabError, match="facelab train"):
        task.evaluate_config({**task.default_config, "detector": "cnn"}, trial)


@pytest.mark.realdata
def test_batch_predictions_score(fitted, orl_small, tmp_path):
    """The batch predictor over the pairs' files (as `facelab submit` runs it), written and scored."""
    task, data, model_dir, metrics = fitted
    frame = data["pairs"].dataset.to_pandas()
    out = task.predictor_class(str(model_dir))({c: frame[c].to_numpy() for c in frame})
    predictions = task.predictions_frame(pd.DataFrame({k: list(v) for k, v in out.items()}))
    task.format.write_submission(predictions, tmp_path / "submission.csv")
    scores = task.format.score(tmp_path / "submission.csv", orl_small / "pairs.csv")
    assert scores["accuracy"] == pytest.approx(metrics["fit_accuracy"]) and scores["accuracy"] >= 0.95
    assert scores["roc_auc"] >= 0.98


def _b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.realdata
def test_serve_contract(fitted, data_root):
    from facelab.uploads import UploadError, encode_png, to_base64

    task, _, model_dir, metrics = fitted
    predictor = task.predictor_class(str(model_dir))
    orl = data_root / "orl_faces"

    def ask(a: str, b: str) -> dict:
        rows, batched = task.request_rows(task.Request.model_validate({"image_a": a, "image_b": b}))
        batch = {key: np.array([row[key] for row in rows] + [None], dtype=object)[:-1] for key in rows[0]}
        out = predictor(batch)
        return task.response([{k: v[i] for k, v in out.items()} for i in range(len(rows))], batched)

    same = ask(_b64(orl / "s7" / "1.pgm"), _b64(orl / "s7" / "4.pgm"))
    assert set(same) == {"distance", "threshold", "same", "model"}
    assert same["same"] and same["distance"] < same["threshold"] == pytest.approx(metrics["threshold"])
    different = ask(_b64(orl / "s7" / "1.pgm"), _b64(orl / "s8" / "1.pgm"))
    assert not different["same"] and different["distance"] > different["threshold"]
    blank = to_base64(encode_png(np.full((112, 92, 3), 128, np.uint8)))
    with pytest.raises(UploadError) as error:
        ask(_b64(orl / "s7" / "1.pgm"), blank)
    assert (error.value.status, error.value.field, error.value.reason) == (422, "image_b", "no face found")
    with pytest.raises(UploadError) as error:
        ask("bm90IGFuIGltYWdl", blank)  # base64 of "not an image"
    assert error.value.field == "image_a" and error.value.status == 415


@pytest.mark.realdata
def test_a_pair_with_no_face_is_kept_and_named_in_the_side_file(task_fit, tmp_path):
    """`facelab submit` over pairs where one image shows no face: every pair is answered (that one
    with the model's fallback) and the side file names its true line, side and image."""
    import shutil

    from facelab.predict import submit

    fit = task_fit("verify")
    data = shutil.copytree(fit.data_dir, tmp_path / "data")
    pairs = pd.read_csv(data / "pairs.csv", dtype=str)
    blank = pairs["file_b"].iloc[2]
    with Image.open(data / blank) as image:
        Image.new(image.mode, image.size, 128).save(data / blank, format=image.format)  # no face in it
    out = tmp_path / "submission.csv"
    summary = submit("verify", data, out, fit.store)
    assert summary["rows"] == len(pairs) and summary["bad_rows"] == 0
    assert summary["fallback_rows"] == int((pairs[["file_a", "file_b"]] == blank).sum().sum()) >= 1
    assert len(pd.read_csv(out)) == len(pairs)
    named = pd.read_csv(summary["bad_rows_file"])
    first = named[named["row"] == 4].iloc[0]  # the third pair is the file's line 4
    assert first["field"] == "file_b" and Path(first["file"]).name == "pairs.csv"
    assert first["reason"].startswith(f"no face found in {blank}: kept with the fallback answer")
