"""The crowd solver: crowds solved through the Ray Data submit job and scored; a random solver
fails the same bar; the Serve request path; tuning's scoring of variants."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.formats.crowd import N_FACES, SIZE, TILE
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.tasks.crowd import (
    VARIANTS,
    CrowdPredictor,
    CrowdRequest,
    as_tile,
    write_config,
)
from facelab.uploads import UploadError
from PIL import Image

FMT = get_format("crowd")
TASK = get_task("crowd")
BAR = 0.5  # of the test crowds found; chance is 1 in 100 per crowd


@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared crowd fit: its demo data, two synthetic crowds (dlib's encodings find
    their cartoon faces too; the real crowds' accuracy is a measured job: README)."""
    return task_fit("crowd")


@pytest.fixture(scope="module")
def crowds(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def submitted(fit, tmp_path_factory):
    """The shared fit (a 1-trial sweep, promoted) -> its submission through the Ray Data actor pool."""
    summary = fit.submission()
    return fit.store, fit.run_id, fit.metrics, summary, Path(summary["submission"])


def _b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_submission_finds_the_missing_faces(submitted, crowds):
    store, _, metrics, summary, out = submitted
    assert metrics == {}  # nothing learned, nothing claimed
    assert ModelStore(store).load("crowd").config["method"] == TASK.default_config["method"]
    assert summary["rows"] == 2 and summary["bad_rows"] == 0
    written = pd.read_csv(out, dtype={"ImageID": str})
    assert list(written.columns) == ["ImageID", "target"] and written["target"].between(0, N_FACES - 1).all()
    assert FMT.score(out, crowds / "truth.csv")["accuracy"] >= BAR


def test_a_random_solver_fails_the_bar(submitted, crowds, tmp_path, monkeypatch):
    """The same predictor and scorer with the face comparison replaced by noise."""
    store = ModelStore(submitted[0]).load("crowd")
    rng = np.random.default_rng(0)
    monkeypatch.setattr("facelab.tasks.crowd.CrowdSolver.distances",
                        lambda self, missing, target: {v: rng.random(N_FACES) for v in self.variants})
    rows = FMT.read(crowds, "test").dataset.to_pandas()
    out = CrowdPredictor(str(store.model_dir))({k: rows[k].to_numpy() for k in rows})
    FMT.write_submission(TASK.predictions_frame(pd.DataFrame(out)), tmp_path / "random.csv", data=crowds)
    assert FMT.score(tmp_path / "random.csv", crowds / "truth.csv")["accuracy"] < BAR


def test_serve_rows_answer_like_the_batch_job(submitted, crowds):
    """request_rows -> predictor -> response, as the Serve deployment runs them, on one crowd."""
    store = ModelStore(submitted[0]).load("crowd")
    name = min((crowds / "missing").glob("*.jpg")).name
    body = {k: base64.b64encode((crowds / k / name).read_bytes()).decode() for k in ("missing", "target")}
    rows, batched = TASK.request_rows(CrowdRequest.model_validate(body))
    assert not batched and rows[0]["missing"].shape == (TILE, TILE, 3) and rows[0]["target"].shape == (SIZE, SIZE, 3)
    out = CrowdPredictor(str(store.model_dir))({k: np.stack([r[k] for r in rows]) for k in rows[0]})
    answer = TASK.response([{k: v[0] for k, v in out.items()}], batched)
    expected = int(pd.read_csv(submitted[4], dtype={"ImageID": str}).set_index("ImageID").loc[name[:-4], "target"])
    assert answer["index"] == expected and (answer["row"], answer["col"]) == divmod(expected, 10)
    assert answer["distance"] is not None and answer["distance"] >= 0


def test_bad_uploads_are_4xx(tmp_path):
    crowd = np.full((SIZE, SIZE, 3), 128, np.uint8)
    with pytest.raises(UploadError) as not_image:
        TASK.request_rows(CrowdRequest(missing=base64.b64encode(b"not an image").decode(), target=_b64(crowd)))
    assert not_image.value.status == 415 and not_image.value.field == "missing"
    with pytest.raises(UploadError) as small:
        TASK.request_rows(CrowdRequest(missing=_b64(crowd[:TILE, :TILE]), target=_b64(crowd[:1000, :1000])))
    assert small.value.status == 422 and small.value.field == "target"
    with pytest.raises(UploadError, match="no face") as faceless:
        TASK.request_rows(CrowdRequest(missing=_b64(crowd[:300, :200]), target=_b64(crowd)))
    assert faceless.value.status == 422 and faceless.value.field == "missing"
    for sub, image in (("missing", crowd[:TILE, :TILE]), ("target", crowd)):
        (tmp_path / sub).mkdir()
        Image.fromarray(image).save(tmp_path / sub / "abcde.jpg")
    good, bad = TASK.demo_requests(tmp_path)
    assert CrowdRequest.model_validate(good) and CrowdRequest.model_validate(bad)
    with pytest.raises(UploadError):
        TASK.request_rows(CrowdRequest.model_validate(bad))


def test_tuning_scores_each_variant_by_its_own_distances():
    """evaluate_config reads the config's variant's distances; ties and infinities are misses."""
    truth = np.array([3, 7, 0])
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "target": truth})
    for v in VARIANTS:
        frame[f"d_{v}"] = list(np.ones((3, N_FACES), np.float32))
    right = np.ones((3, N_FACES), np.float32)
    right[np.arange(3), truth] = 0.5
    frame["d_encoding-whole-small"] = list(right)
    tied = right.copy()
    tied[1, 8] = 0.5  # a tie with the answer is not a hit
    frame["d_encoding-detect-large"] = list(tied)
    frame["d_landmarks"] = list(np.full((3, N_FACES), np.inf, np.float32))
    score = TASK.evaluate_config
    assert score({"method": "encoding", "tiles": "whole", "model": "small"}, frame)["accuracy"] == 1.0
    assert score({"method": "encoding", "tiles": "detect", "model": "large"}, frame)["accuracy"] == pytest.approx(2 / 3)
    assert score({"method": "encoding", "tiles": "detect", "model": "large"}, frame)["top5_accuracy"] == 1.0
    assert score({"method": "encoding", "tiles": "whole", "model": "mean"}, frame)["accuracy"] == 0.0
    assert score({"method": "landmarks", "model": "mesh"}, frame)["accuracy"] == 0.0


def test_fit_stores_a_checked_config(tmp_path):
    assert TASK.fit({**TASK.default_config, "method": "landmarks", "model": "mesh"}, {}, tmp_path) == {}
    assert CrowdPredictor(str(tmp_path)).variant == "landmarks"
    with pytest.raises(FacelabError, match="tiles must be one of"):
        TASK.fit({**TASK.default_config, "method": "encoding", "tiles": "sideways"}, {}, tmp_path)
    write_config({"method": "telepathy"}, tmp_path)
    with pytest.raises(FacelabError, match="not one of"):
        CrowdPredictor(str(tmp_path))


def test_as_tile_letterboxes_any_image():
    assert as_tile(np.zeros((TILE, TILE, 3), np.uint8)).shape == (TILE, TILE, 3)
    tall = np.zeros((400, 100), np.uint8)
    tall[:, 40:60] = 255
    tile = as_tile(tall)
    assert tile.shape == (TILE, TILE, 3) and tile[:, TILE // 2].mean() > 200 and tile[:, 5].mean() < 10


def test_a_missing_image_without_a_face_is_named_as_a_fallback_row(submitted, crowds):
    """The shared submission names, in its side file, exactly the crowds whose missing image shows no
    face the model's detector finds (answered from the whole tile)."""
    from facelab.faces import get_detector
    from facelab.formats.images import load_rgb

    store, _, _, summary, _ = submitted
    config = ModelStore(store).load("crowd").config
    detector = get_detector(config["detector"], fallback_whole=True, landmarks=False)
    rows = FMT.read(crowds, "test").dataset.to_pandas()
    faceless = [(str(f), int(r)) for f, r, path in zip(rows["_file"], rows["_row"], rows["missing_path"])
                if (config["method"], config["tiles"]) == ("encoding", "detect") and detector(as_tile(load_rgb(path)))[0].whole_image]
    assert summary["fallback_rows"] == len(faceless) and summary["bad_rows"] == 0
    if not faceless:
        assert summary["bad_rows_file"] is None
        return
    named = pd.read_csv(summary["bad_rows_file"])
    assert list(zip(named["file"], named["row"])) == faceless and set(named["field"]) == {"missing"}
    assert named["reason"].str.contains("no face found in the missing image .*: kept with the fallback answer").all()
