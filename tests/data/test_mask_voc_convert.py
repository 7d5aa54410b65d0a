"""`facelab data convert --task mask-voc`: the Kaggle VOC face-mask set in the multi-face variant of
the mask layout (one row per face, `labels.json`), read back by the mask task."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from facelab.converters import convert
from facelab.converters.mask_voc import LABELS
from facelab.formats.mask import parse_bbox

OBJECT = ("<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax>"
          "</bndbox></object>")


@pytest.fixture
def fake_voc(tmp_path):
    root = tmp_path / "root" / "facemask_voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i in range(7):
        Image.new("RGBA", (120, 90), (10 * i, 100, 100, 255)).save(root / "images" / f"m{i}.png")
        objects = [OBJECT.format("with_mask", 10, 10, 40, 40), OBJECT.format("without_mask", 60, 20, 130, 95)]
        if i == 0:
            objects += [OBJECT.format("mask_weared_incorrect", 50, 50, 50, 70), OBJECT.format("hat", 1, 1, 5, 5)]
        (root / "annotations" / f"m{i}.xml").write_text(f"<annotation>{''.join(objects)}</annotation>")
    return tmp_path / "root"


def test_convert_writes_one_row_per_face(fake_voc, tmp_path):
    out = tmp_path / "out"
    summary = convert("mask-voc", fake_voc, out, seed=0)
    assert summary["images"] == 7 and summary["train"] + summary["val"] == 7 and summary["val"] == 2
    assert summary["boxes_dropped_empty"] == 1 and summary["objects_with_unknown_label"] == 1
    assert json.loads((out / "labels.json").read_text()) == list(LABELS)
    rows = pd.concat([pd.read_csv(out / "train.csv"), pd.read_csv(out / "val.csv")])
    assert len(rows) == 14 and rows["ImageID"].value_counts().eq(2).all()
    clipped = [parse_bbox(b) for b, m in zip(rows["bbox"], rows["masktype"]) if m == "without_mask"]
    assert all(b == [60, 20, 120, 90] for b in clipped)  # clipped to the 120x90 image
    assert all(Image.open(next(out.glob(f"*/{i}.jpg"))).mode == "RGB" for i in rows["ImageID"])


def test_mask_task_reads_the_multi_face_layout(fake_voc, tmp_path, ray_local):
    from facelab.tasks import get_task

    out = tmp_path / "out"
    convert("mask-voc", fake_voc, out, seed=0)
    task = get_task("mask")
    reads = task.read_for_fit(out)
    assert sum(r.dataset.count() for r in reads.values()) == 14 and not any(r.bad for r in reads.values())
    assert task.class_names(reads) == tuple(sorted(["with_mask", "without_mask"]))


@pytest.mark.realdata
def test_real_voc_set_converts(data_root, tmp_path):
    summary = convert("mask-voc", data_root, tmp_path / "voc", seed=0)
    assert summary["images"] == 140 and summary["faces"] > 140
    assert set(summary["per_label"]) <= set(LABELS)
