"""The VOC face-detection layout: synthetic folders read back, bad XML named by file, the scorer."""

import json
import shutil

import pandas as pd
import pytest

from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.detect import parse_voc, truth_boxes, voc_items, write_voc

FMT = get_format("detect")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return FMT.synthesize(tmp_path_factory.mktemp("detect") / "data", n=6, seed=1)


def test_synthetic_splits_read_with_boxes(synth, ray_local):
    for split in FMT.splits:
        rows = FMT.read(synth, split).dataset.take_all()
        assert len(rows) == 3
        for row in rows:
            boxes = json.loads(row["boxes"])
            assert 1 <= len(boxes) <= 3 and json.loads(row["labels"]) == ["face"] * len(boxes)
            assert all(0 <= b[0] < b[2] <= row["width"] and 0 <= b[1] < b[3] <= row["height"] for b in boxes)


def test_flat_folder_is_every_split(synth, tmp_path, ray_local):
    flat = shutil.copytree(synth / "test", tmp_path / "flat")
    assert FMT.read(flat, "val").dataset.count() == FMT.read(flat, "test").dataset.count() == 3


@pytest.mark.parametrize("content, field, reason", [
    ("<annotation><object>", "xml", "not well-formed"),
    ("<notvoc/>", "xml", "expected <annotation>"),
    ("<annotation><object><name>face</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "object[1]/bndbox/xmin", "not a number"),
    ("<annotation><object><name>face</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "object[1]/bndbox", "xmin < xmax"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>face</name><bndbox><xmin>1</xmin>"
     "<ymin>1</ymin><xmax>50</xmax><ymax>5</ymax></bndbox></object></annotation>", "object[1]/bndbox", "outside"),
    ("<annotation><object><bndbox/></object></annotation>", "object[1]/name", "missing"),
])
def test_bad_xml_is_named_by_file(synth, tmp_path, content, field, reason, ray_local):
    data = shutil.copytree(synth, tmp_path / "data")
    broken = sorted((data / "val" / "annotations").glob("*.xml"))[1]
    broken.write_text(content)
    with pytest.raises(DataError) as err:
        FMT.read(data, "val")
    bad = err.value.bad
    assert bad.file == str(broken) and bad.row == 2 and bad.field == field and reason in bad.reason
    read = FMT.read(data, "val", skip_bad=True)
    assert read.dataset.count() == 2 and [b.file for b in read.bad] == [str(broken)]


def test_missing_image_or_annotation_is_a_bad_row(synth, tmp_path, ray_local):
    data = shutil.copytree(synth, tmp_path / "data")
    images = sorted((data / "test" / "images").iterdir())
    images[0].unlink()
    (data / "test" / "annotations" / f"{images[1].stem}.xml").unlink()
    read = FMT.read(data, "test", skip_bad=True)
    assert {b.field for b in read.bad} == {"image", "annotation"} and read.dataset.count() == 1


def test_unlabelled_folder_reads_without_boxes(synth, tmp_path, ray_local):
    data = tmp_path / "new"
    shutil.copytree(synth / "test" / "images", data / "images")
    rows = FMT.read(data, "test").dataset.take_all()
    assert len(rows) == 3 and all(json.loads(r["boxes"]) == [] for r in rows)


def test_voc_round_trip(tmp_path):
    path = write_voc(tmp_path / "a.xml", "a.png", 100, 80, [("with_mask", [1, 2, 30, 40]), ("without_mask", [50, 5, 90, 70])])
    assert parse_voc(path) == {"width": 100, "height": 80, "boxes": [[1, 2, 30, 40], [50, 5, 90, 70]],
                               "labels": ["with_mask", "without_mask"]}


def _submission(path, rows):
    pd.DataFrame(rows, columns=["file", "x0", "y0", "x1", "y1", "score"]).to_csv(path, index=False)
    return path


def test_score_perfect_half_and_false_positives(synth, tmp_path):
    boxes, _ = truth_boxes(synth / "test")
    truth = [(f, *b) for f, bs in boxes.items() for b in bs]
    perfect = FMT.score(_submission(tmp_path / "p.csv", [(*t, 0.9) for t in truth]), synth)
    assert perfect["ap50"] == pytest.approx(1.0) and perfect["precision"] == 1.0 and perfect["recall"] == 1.0
    # every other face found, and a confident box where there is no face
    half = [(*t, 0.9) for t in truth[::2]] + [(truth[0][0], 0, 0, 5, 5, 0.95)]
    scored = FMT.score(_submission(tmp_path / "h.csv", half), synth)
    found = len(truth[::2])
    assert scored["recall"] == pytest.approx(found / len(truth))
    assert scored["precision"] == pytest.approx(found / (found + 1))
    assert scored["ap50"] < scored["recall"]  # the false positive ranks first
    empty = FMT.score(_submission(tmp_path / "e.csv", []), synth)
    assert empty["ap50"] == 0.0 and empty["recall"] == 0.0


def test_score_names_bad_submission_rows(synth, tmp_path):
    name = next(iter(truth_boxes(synth / "test")[0]))
    with pytest.raises(DataError, match="row 3: field 'file'"):
        FMT.score(_submission(tmp_path / "a.csv", [(name, 1, 1, 9, 9, 0.5), ("nope.png", 1, 1, 9, 9, 0.5)]), synth)
    with pytest.raises(DataError, match="row 2"):
        FMT.score(_submission(tmp_path / "b.csv", [(name, 9, 1, 1, 9, 0.5)]), synth)


def test_voc_items_match_the_ray_reader(synth, ray_local):
    ray_rows = pd.DataFrame(FMT.read(synth, "val").dataset.take_all()).sort_values("_row")
    direct = voc_items(synth / "val")
    assert list(ray_rows["boxes"]) == list(direct["boxes"]) and list(ray_rows["file"]) == list(direct["file"])
