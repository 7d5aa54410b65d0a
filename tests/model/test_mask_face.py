"""The mask's face method (`mask-face`): the lower-face box regression on its own, the whole
method trained, submitted and answered on synthetic data (CI-sized), and the face detector plus
box regression on the real Blitz images where present."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.formats.mask import MASK_TYPES, parse_bbox
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.metrics import ious as iou
from facelab.tasks.mask_face import N_FEATURES, LowerFaceBox, add_faces, crop
from facelab.uploads import UploadError



def _faces_and_masks(n: int, rng: np.random.Generator):
    """Random faces in 512x512 images, each mask the face's lower 60% shifted by its features."""
    x0, y0 = rng.uniform(0, 200, n), rng.uniform(0, 200, n)
    side = rng.uniform(150, 300, n)
    faces = np.stack([x0, y0, x0 + side, y0 + side], 1)
    features = rng.normal(0, 1, (n, N_FEATURES))
    relative = np.stack([0.05 + 0.02 * features[:, 0], 0.4 + 0.03 * features[:, 1],
                         0.95 - 0.02 * features[:, 2], np.full(n, 1.0)], 1)
    masks = np.tile(faces[:, :2], 2) + relative * side[:, None]
    return faces, features, np.clip(masks, 0, 512), np.full((n, 2), 512.0)


def test_box_regression_learns_the_mask_box_from_the_face():
    rng = np.random.default_rng(0)
    faces, features, masks, sizes = _faces_and_masks(200, rng)
    boxes = LowerFaceBox.fit(faces[:150], features[:150], masks[:150], sizes[:150])
    predicted = np.stack([boxes.predict(f, x, (512, 512)) for f, x in zip(faces[150:], features[150:])])
    assert np.median(iou(predicted, masks[150:])) > 0.95
    # the features matter: the mean relative box alone is worse
    blind = LowerFaceBox.fit(faces[:150], np.zeros_like(features[:150]), masks[:150], sizes[:150])
    guessed = np.stack([blind.predict(f, np.zeros(N_FEATURES), (512, 512)) for f in faces[150:]])
    assert iou(guessed, masks[150:]).mean() < iou(predicted, masks[150:]).mean()
    # no face: the training set's mean mask box, in the image's own size
    prior = boxes.predict(None, None, (256, 128))
    assert np.allclose(prior, masks[:150].mean(0) / 2 * [1, 0.5, 1, 0.5])
    again = LowerFaceBox.from_json(boxes.to_json())
    assert np.allclose(again.predict(faces[150], features[150], (512, 512)), predicted[0])


def test_crop_stays_inside_the_image():
    image = np.zeros((100, 80, 3), np.uint8)
    rng = np.random.default_rng(1)
    for box in ([-20, -20, 200, 200], [70, 90, 80, 100], [10, 10, 11, 11]):
        for _ in range(20):
            part = crop(image, np.array(box, float), 0.3, rng, 0.2)
            assert part.shape[0] >= 1 and part.shape[1] >= 1 and part.shape[0] <= 100 and part.shape[1] <= 80


@pytest.fixture(scope="module")
def fit(task_fit):
    """The suite's shared mask-face fit (fit_cases.py)."""
    return task_fit("mask-face")


@pytest.fixture(scope="module")
def mask_data(fit):
    return fit.data_dir


@pytest.fixture(scope="module")
def trained(fit):
    return fit.data_dir, fit.store, fit.run_id, fit.metrics


def test_training_learns_the_mask_types(trained, fit):
    """Synthetic masks differ in shape and colour: the type CNN beats chance on the regressed
    boxes of the validation images, and the history has every epoch."""
    _, store, run_id, metrics = trained
    assert 0 < metrics["train_face_found"] <= 1 and 0 < metrics["box_iou"] <= 1
    assert metrics["type_accuracy"] > 0.25 + 0.15, metrics
    run = ModelStore(store).load("mask-face")
    history = pd.read_csv(run.model_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, fit.config["epochs"] + 1))
    saved = json.loads((run.model_dir / "config.json").read_text())  # what the predictor is built from
    assert saved["labels"] == list(MASK_TYPES) and set(saved["box_model"]) == {"coef", "intercept", "prior"}


def test_submission_and_score(trained, mask_data, tmp_path, checked_mask_submission):
    scores = checked_mask_submission("mask-face", mask_data, trained[1], tmp_path / "sub.csv")
    assert scores["type_accuracy"] > 0.25, scores


def test_serve_answers_and_rejects(trained, mask_data):
    task = get_task("mask-face")
    good, bad = task.demo_requests(mask_data)
    rows, batched = task.request_rows(task.Request.model_validate(good))
    with pytest.raises(UploadError) as info:
        task.request_rows(task.Request.model_validate(bad))
    assert info.value.status in (415, 422)
    predictor = task.predictor_class(str(ModelStore(trained[1]).load("mask-face").model_dir))
    image = rows[0]["image"]
    column = np.empty(2, dtype=object)
    column[:] = [image, image[:300, :400]]
    out = predictor({"image": column})
    answers = task.response([{k: v[i] for k, v in out.items()} for i in range(2)], batched=True)["predictions"]
    assert answers[0]["masktype"] in MASK_TYPES and 0.0 <= answers[0]["confidence"] <= 1.0
    x0, y0, x1, y1 = answers[1]["bbox"]
    assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300


def test_several_masks_per_image_are_refused(ray_local, tmp_path):
    data = get_format("mask").synthesize(tmp_path / "d", n=20, seed=0)
    csv = data / "train.csv"
    frame = pd.read_csv(csv)
    pd.concat([frame, frame.iloc[:1]]).to_csv(csv, index=False)
    task = get_task("mask-face")
    with pytest.raises(FacelabError, match="several masks in image"):
        task.prepare_data(task.read_for_fit(data), task.default_config)


def test_real_faces_and_boxes(ray_local, data_root):
    """On the real Blitz images: mediapipe finds the face in nearly all, and the box regressed
    from the train faces overlaps the val masks far better than the mean mask box does."""
    root = data_root / "aiblitz_mask"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    frames = {}
    for split in ("train", "val"):
        rows = pd.read_csv(root / f"{split}.csv")
        frames[split] = add_faces(pd.DataFrame({"path": [str(root / split / f"{i}.jpg") for i in rows["ImageID"]]})).assign(
            box=[np.array(parse_bbox(b)) for b in rows["bbox"]])
    found = {s: np.mean([not np.isnan(f).any() for f in frame["face"]]) for s, frame in frames.items()}
    assert min(found.values()) >= 0.95, found
    train, val = frames["train"], frames["val"]
    boxes = LowerFaceBox.fit(np.stack(train["face"]), np.stack(train["features"]), np.stack(train["box"]),
                             np.stack(train["size"]))
    regressed = np.stack([boxes.predict(None if np.isnan(f).any() else f, x, s)
                          for f, x, s in zip(val["face"], val["features"], val["size"])])
    prior = np.stack([boxes.predict(None, None, s) for s in val["size"]])
    truth = np.stack(val["box"])
    assert np.mean(iou(regressed, truth) >= 0.5) >= 0.8
    assert iou(regressed, truth).mean() > iou(prior, truth).mean() + 0.15
