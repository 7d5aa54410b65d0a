"""facelab.yolo.layout (and train.model_yaml) without training: ultralytics' layout from a task's rows (cache keyed by the data,
never in the data folder), the seed's crop doubling, and the mask task's scoring of detections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from facelab.yolo.layout import YoloData, materialize
from facelab.yolo.train import model_yaml
from facelab.formats.age_bins import AGE_BINS
from facelab.formats.mask import MASK_TYPES
from facelab.store import fingerprint
from facelab.mask_answers import score_detections


def _image(path, size=(200, 160), color=(90, 90, 90), box=None, box_color=(250, 20, 20)):
    image = Image.new("RGB", size, color)
    if box is not None:
        image.paste(box_color, tuple(box))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return str(path)


@pytest.fixture
def detection_rows(tmp_path):
    """Two train images (one with two objects), one val image, in <root>/<split>/<id>.jpg."""
    root = tmp_path / "data"
    rows = {
        "train": pd.DataFrame([
            ("a1", _image(root / "train/a1.jpg", box=(40, 40, 120, 100)), "N95", 40, 40, 120, 100),
            ("a2", _image(root / "train/a2.jpg"), "cloth", 0, 10, 50, 60),
            ("a2", _image(root / "train/a2.jpg"), "KN95", 100, 80, 200, 160),
        ], columns=["image_id", "path", "label", "xmin", "ymin", "xmax", "ymax"]),
        "val": pd.DataFrame([("b1", _image(root / "val/b1.jpg"), "surgical", 10, 20, 30, 40)],
                            columns=["image_id", "path", "label", "xmin", "ymin", "xmax", "ymax"]),
    }
    return root, YoloData("detect", MASK_TYPES, rows, fingerprint(root), score_detections)


def test_detection_layout_holds_normalised_boxes_and_stays_out_of_the_data(detection_rows, tmp_path):
    root, data = detection_rows
    before = sorted(p.name for p in root.rglob("*"))
    data_yaml = materialize(data, cache=tmp_path / "cache")
    spec = yaml.safe_load(data_yaml.read_text())
    assert spec["names"] == dict(enumerate(MASK_TYPES)) and spec["train"] == "images/train"
    folder = data_yaml.parent
    assert str(folder).startswith(str(tmp_path / "cache" / "yolo-data"))
    lines = (folder / "labels/train/a2.txt").read_text().split("\n")[:2]
    # cloth [0, 10, 50, 60] in a 200x160 image; KN95 [100, 80, 200, 160]
    assert [float(v) for v in lines[0].split()] == pytest.approx([3, 25 / 200, 35 / 160, 50 / 200, 50 / 160])
    assert [float(v) for v in lines[1].split()] == pytest.approx([2, 150 / 200, 120 / 160, 0.5, 0.5])
    assert (folder / "images/val/b1.jpg").read_bytes() == (root / "val/b1.jpg").read_bytes()
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written into the data folder


def test_cache_is_keyed_by_data_and_options(detection_rows, tmp_path):
    root, data = detection_rows
    cache = tmp_path / "cache"
    first = materialize(data, cache=cache)
    stamp = (first.parent / ".complete").stat().st_mtime_ns
    assert materialize(data, cache=cache) == first
    assert (first.parent / ".complete").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert materialize(data, cache=cache, merge_val=True) != first
    _image(root / "val/b1.jpg", color=(10, 200, 10))  # the data changed: a new fingerprint, a new folder
    changed = YoloData("detect", MASK_TYPES, data.rows, fingerprint(root), score_detections)
    assert materialize(changed, cache=cache) != first


def test_crop_doubling_moves_boxes_with_the_crop(detection_rows, tmp_path):
    _, data = detection_rows
    folder = materialize(data, cache=tmp_path / "cache", crop_double=0.5).parent
    assert (folder / "images/train/a1_crop.jpg").is_file() and not (folder / "images/val/b1_crop.jpg").exists()
    # a1: 200x160, central half is x 50..150, y 40..120, scaled x2; the box 40..120 x 40..100 becomes
    # x (40-50)*2 -> clipped 0 .. (120-50)*2 = 140, y 0 .. 120
    c, x, y, w, h = (float(v) for v in (folder / "labels/train/a1_crop.txt").read_text().split())
    assert c == 1 and (x - w / 2, y - h / 2, x + w / 2, y + h / 2) == pytest.approx((0, 0, 0.7, 0.75), abs=1e-4)
    crop = np.asarray(Image.open(folder / "images/train/a1_crop.jpg"))
    assert crop.shape == (160, 200, 3) and crop[60, 70, 0] > 200 and crop[140, 180, 0] < 150  # red box moved


def test_classification_layout_has_every_class_folder(tmp_path):
    root = tmp_path / "data"
    rows = {split: pd.DataFrame([(f"{split}{i}", _image(root / split / f"{split}{i}.jpg"), AGE_BINS[i])
                                 for i in range(3)], columns=["image_id", "path", "label"]) for split in ("train", "val")}
    data = YoloData("classify", AGE_BINS, rows, fingerprint(root), None)
    folder = materialize(data, cache=tmp_path / "cache", merge_val=True)
    assert sorted(p.name for p in (folder / "train").iterdir()) == sorted(AGE_BINS)
    assert len(list((folder / "train" / "0-10").iterdir())) == 2  # train0 and val0 (merge_val)
    assert len(list((folder / "val").rglob("*.jpg"))) == 3


def test_model_yaml_names():
    assert model_yaml("yolov8n", "detect") == "yolov8n.yaml"
    assert model_yaml("yolo11s", "classify") == "yolo11s-cls.yaml"
    assert model_yaml("yolo11s-cls.yaml", "classify") == "yolo11s-cls.yaml"


def test_mask_scoring_keeps_each_images_most_confident_box():
    truth = [("a", [0, 0, 10, 10], "N95"), ("b", [20, 20, 40, 40], "cloth")]
    right = [("a", [0, 0, 10, 10], "N95", 0.9), ("a", [50, 50, 60, 60], "cloth", 0.3),
             ("b", [21, 21, 40, 40], "cloth", 0.8)]
    assert score_detections(truth, right)["ap50"] == pytest.approx(1.0)
    assert score_detections(truth, right)["type_accuracy"] == 1.0
    # the wrong box of "a" is now the most confident: a's answer is wrong, b's still right; as in a
    # submission (no confidences) a's false cloth comes before b's true one: cloth AP 0.5
    wrong_first = [("a", [50, 50, 60, 60], "cloth", 0.95), *right]
    scores = score_detections(truth, wrong_first)
    assert scores["type_accuracy"] == 0.5 and scores["ap50_N95"] == 0.0 and scores["ap50_cloth"] == 0.5


def test_multi_face_scoring_uses_every_detection():
    truth = [("a", [0, 0, 10, 10], "with_mask"), ("a", [20, 0, 30, 10], "without_mask")]
    found = [("a", [0, 0, 10, 10], "with_mask", 0.9), ("a", [20, 0, 30, 10], "without_mask", 0.8)]
    scores = score_detections(truth, found)
    assert scores["ap50"] == pytest.approx(1.0) and "type_accuracy" not in scores
    assert score_detections(truth, found[:1])["ap50"] == pytest.approx(0.5)
