"""The AI Blitz XIII image layouts: age-bins, mask, crowd, deblur (facelab.formats.*).

Each format: synthesize a tiny dataset, read every split, write a submission from the truth
and score it (perfect), score a wrong one (lower), and reject malformed input with a
DataError naming file, row and field (or keep the good rows with skip_bad=True).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.errors import DataError
from facelab.formats import get_format
from facelab.formats.age_bins import AGE_BINS, AgeBinsFormat
from facelab.formats.crowd import CrowdFormat, tiles
from facelab.formats.deblur import DeblurFormat
from facelab.formats.images import load_rgb
from facelab.formats.mask import MASK_TYPES, MaskFormat, format_bbox, parse_bbox


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """One tiny synthetic dataset per format, made once (tests copy before corrupting)."""
    made = {}

    def make(task: str, n: int) -> Path:
        if task not in made:
            made[task] = get_format(task).synthesize(tmp_path_factory.mktemp(task), n=n, seed=3)
        return made[task]

    return make


def copy_of(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "copy"))


def rows_of(read) -> list[dict]:
    return sorted(read.dataset.take_all(), key=lambda r: (r["_file"], r["_row"]))


def assert_bad(fmt, root: Path, split: str, expected: dict[tuple[str, int], str], n_good: int) -> None:
    """Reading raises a DataError naming the first bad (file, row, field); skip_bad keeps the rest."""
    with pytest.raises(DataError) as info:
        fmt.read(root, split)
    first = min(expected)
    message = str(info.value)
    assert first[0] in message and f"row {first[1]}:" in message and f"field '{expected[first]}'" in message
    read = fmt.read(root, split, skip_bad=True)
    assert {(Path(b.file).name, b.row): b.field for b in read.bad} == {(Path(f).name, r): v for (f, r), v in expected.items()}
    assert read.dataset.count() == n_good


def corrupt(path: Path) -> None:
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")


# --- age-bins ------------------------------------------------------------------------------

AGE_N = 6  # train 6, val 2, test 3


def test_age_read_write_score(ray_local, synth, tmp_path):
    root, fmt = synth("age-bins", AGE_N), AgeBinsFormat()
    counts = {split: fmt.read(root, split).dataset for split in fmt.splits}
    assert {s: ds.count() for s, ds in counts.items()} == {"train": 6, "val": 2, "test": 3}
    train = rows_of(fmt.read(root, "train"))
    assert set(train[0]) == {"_file", "_row", "image_id", "path", "label"}
    assert all(r["label"] in AGE_BINS and Path(r["path"]).is_file() for r in train)
    test = rows_of(fmt.read(root, "test"))
    assert all(r["label"] == "" for r in test) and [r["_row"] for r in test] == [2, 3, 4]

    truth = pd.read_csv(root / "test_truth.csv", dtype=str)
    preds = pd.DataFrame({"image_id": truth["ImageID"][::-1], "label": truth["age"][::-1]})
    sub = fmt.write_submission(preds, tmp_path / "sub.csv", data=root)
    written = pd.read_csv(sub, dtype=str)
    assert list(written.columns) == ["ImageID", "age"] and list(written["ImageID"]) == list(truth["ImageID"])
    assert fmt.score(sub, root / "test_truth.csv") == pytest.approx({"f1_weighted": 1.0, "accuracy": 1.0})

    shifted = [AGE_BINS[(AGE_BINS.index(a) + 1) % 10] for a in preds["label"]]
    wrong = fmt.write_submission(preds.assign(label=shifted), tmp_path / "wrong.csv", data=root)
    assert fmt.score(wrong, root / "test_truth.csv")["accuracy"] == 0.0

    with pytest.raises(DataError, match="no prediction for ImageID"):
        fmt.write_submission(preds.iloc[1:], tmp_path / "short.csv", data=root)
    written.iloc[1:].to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(DataError, match=r"missing.csv: field 'ImageID': no row for ImageID"):
        fmt.score(tmp_path / "missing.csv", root / "test_truth.csv")
    written.assign(age=["0-10", "ten", "0-10"]).to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(DataError, match=r"unknown.csv: row 3: field 'age': 'ten' is not an age bin"):
        fmt.score(tmp_path / "unknown.csv", root / "test_truth.csv")


def test_age_bad_rows(ray_local, synth, tmp_path):
    root, fmt = copy_of(synth("age-bins", AGE_N), tmp_path), AgeBinsFormat()
    table = pd.read_csv(root / "train.csv", dtype=str)
    table.loc[1, "age"] = "100-110"  # line 3
    table.to_csv(root / "train.csv", index=False)
    corrupt(root / "train" / f"{table['ImageID'][3]}.jpg")  # line 5
    (root / "train" / f"{table['ImageID'][4]}.jpg").unlink()  # line 6
    assert_bad(fmt, root, "train", {("train.csv", 3): "age", ("train.csv", 5): "ImageID",
                                    ("train.csv", 6): "ImageID"}, n_good=3)

    table.drop(columns=["age"]).to_csv(root / "val.csv", index=False)
    with pytest.raises(DataError, match=r"val.csv: row 1: field 'age': missing column"):
        fmt.read(root, "val")


# --- mask ----------------------------------------------------------------------------------

MASK_N = 6


def test_mask_bbox_text():
    assert parse_bbox("[73, 197, 293, 400]") == [73.0, 197.0, 293.0, 400.0]
    assert format_bbox([73.4, 196.6, 293.0, 400]) == "[73, 197, 293, 400]"
    for bad in ("[1, 2, 3]", "__import__('os')", "[1, 2, 3, NaN]", "[1, 2, true, 4]", ""):
        with pytest.raises(ValueError, match="bbox"):
            parse_bbox(bad)


def test_mask_read_write_score(ray_local, synth, tmp_path):
    root, fmt = synth("mask", MASK_N), MaskFormat()
    reads = {split: fmt.read(root, split) for split in fmt.splits}
    assert {s: r.dataset.count() for s, r in reads.items()} == {"train": 6, "val": 2, "test": 3}
    train = rows_of(reads["train"])
    assert set(train[0]) == {"_file", "_row", "image_id", "path", "box", "label"}
    csv = pd.read_csv(root / "train.csv", dtype=str)
    assert [list(r["box"]) for r in train] == [parse_bbox(t) for t in csv["bbox"]]
    assert {r["label"] for r in train} <= set(MASK_TYPES)
    test = rows_of(reads["test"])
    assert all(r["label"] == "" and np.isnan(r["box"]).all() for r in test)

    truth = pd.read_csv(root / "test_truth.csv", dtype=str)
    boxes = [parse_bbox(t) for t in truth["bbox"]]
    preds = pd.DataFrame({"image_id": truth["ImageID"], "box": boxes, "label": truth["masktype"]})
    decoy = preds.assign(box=[[0, 0, 5, 5]] * len(preds), confidence=0.1)  # less confident: dropped
    sub = fmt.write_submission(pd.concat([preds.assign(confidence=0.9), decoy]), tmp_path / "sub.csv", data=root)
    assert pd.read_csv(sub, dtype=str).equals(truth)  # same text layout as the truth CSV
    perfect = fmt.score(sub, root / "test_truth.csv")
    assert perfect["ap50"] == pytest.approx(1.0, abs=1e-12) and perfect["type_accuracy"] == 1.0

    moved = [[x0 + (x1 - x0) * 0.6, y0, x1 + (x1 - x0) * 0.6, y1] for x0, y0, x1, y1 in boxes]
    off = fmt.write_submission(preds.assign(box=moved), tmp_path / "off.csv", data=root)
    assert fmt.score(off, root / "test_truth.csv")["ap50"] == 0.0

    pd.read_csv(sub, dtype=str).assign(bbox=["[1, 2, 3, 4]", "[1, 2", "[1, 2, 3, 4]"]).to_csv(tmp_path / "b.csv",
                                                                                              index=False)
    with pytest.raises(DataError, match=r"b.csv: row 3: field 'bbox'"):
        fmt.score(tmp_path / "b.csv", root / "test_truth.csv")


def test_mask_bad_rows(ray_local, synth, tmp_path):
    root, fmt = copy_of(synth("mask", MASK_N), tmp_path), MaskFormat()
    table = pd.read_csv(root / "train.csv", dtype=str)
    table.loc[0, "bbox"] = "[10, 20, 30"  # line 2: unparsable
    table.loc[1, "bbox"] = "[10, 20, 600, 90]"  # line 3: outside the 512x512 image
    table.loc[2, "masktype"] = "gas"  # line 4
    table.loc[3, "bbox"] = "[50, 20, 40, 90]"  # line 5: xmin > xmax
    table.to_csv(root / "train.csv", index=False)
    corrupt(root / "train" / f"{table['ImageID'][4]}.jpg")  # line 6
    assert_bad(fmt, root, "train", {("train.csv", 2): "bbox", ("train.csv", 3): "bbox", ("train.csv", 4): "masktype",
                                    ("train.csv", 5): "bbox", ("train.csv", 6): "ImageID"}, n_good=1)

    table.drop(columns=["bbox"]).to_csv(root / "val.csv", index=False)
    with pytest.raises(DataError, match=r"val.csv: row 1: field 'bbox': missing column"):
        fmt.read(root, "val")


@pytest.mark.realdata
def test_mask_real_data(ray_local, data_root):
    root, fmt = data_root / "aiblitz_mask", MaskFormat()
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    read = fmt.read(root, "train")
    assert read.bad == [] and read.dataset.count() == 100
    # ap50 sums recall steps of 1/n: exact up to float rounding
    assert fmt.score(root / "train.csv", root / "train.csv")["ap50"] == pytest.approx(1.0, abs=1e-12)


# --- crowd ---------------------------------------------------------------------------------

def test_crowd_read_tiles_score(ray_local, synth, tmp_path):
    root, fmt = synth("crowd", 2), CrowdFormat()
    assert fmt.splits == ("test",)
    rows = rows_of(fmt.read(root, "test"))
    assert len(rows) == 2 and set(rows[0]) == {"_file", "_row", "image_id", "missing_path", "target_path"}
    truth = pd.read_csv(root / "truth.csv", dtype=str)
    assert sorted(truth["ImageID"]) == [r["image_id"] for r in rows]

    crowd = load_rgb(rows[0]["target_path"])
    cut = tiles(crowd)
    assert cut.shape == (100, 216, 216, 3)
    assert np.array_equal(cut[37], crowd[3 * 216:4 * 216, 7 * 216:8 * 216])
    assert tiles(crowd[:, :, 0]).shape == (100, 216, 216, 1)

    preds = pd.DataFrame({"image_id": truth["ImageID"], "target": truth["target"].astype(int)})
    sub = fmt.write_submission(preds, tmp_path / "sub.csv", data=root)
    assert list(pd.read_csv(sub, dtype=str).columns) == ["ImageID", "target"]
    assert fmt.score(sub, root / "truth.csv") == {"accuracy": 1.0}
    wrong = fmt.write_submission(preds.assign(target=(preds["target"] + 1) % 100), tmp_path / "w.csv", data=root)
    assert fmt.score(wrong, root / "truth.csv") == {"accuracy": 0.0}
    pd.read_csv(sub, dtype=str).assign(target=["5", "100"]).to_csv(tmp_path / "range.csv", index=False)
    with pytest.raises(DataError, match=r"range.csv: row 3: field 'target': '100' is not a face index"):
        fmt.score(tmp_path / "range.csv", root / "truth.csv")


def test_crowd_bad_rows(ray_local, synth, tmp_path):
    root, fmt = copy_of(synth("crowd", 2), tmp_path), CrowdFormat()
    first, second = sorted(p.name for p in (root / "target").glob("*.jpg"))
    Image.new("RGB", (216, 216)).save(root / "target" / first)  # row 1: not a 2160x2160 crowd
    corrupt(root / "missing" / second)  # row 2
    assert_bad(fmt, root, "test", {(first, 1): "target", (second, 2): "missing"}, n_good=0)


# --- deblur --------------------------------------------------------------------------------

DEBLUR_N = 5  # train 5, val 2, test 3


def test_deblur_read_write_score(ray_local, synth, tmp_path):
    root, fmt = synth("deblur", DEBLUR_N), DeblurFormat()
    counts = {split: fmt.read(root, split).dataset.count() for split in fmt.splits}
    assert counts == {"train": 5, "val": 2, "test": 3}
    train = rows_of(fmt.read(root, "train"))
    assert set(train[0]) == {"_file", "_row", "name", "blur_path", "original_path"}
    assert sorted(r["_row"] for r in train) == [1, 2, 3, 4, 5]
    test = rows_of(fmt.read(root, "test"))
    assert all(r["original_path"] == "" for r in test)

    truth = root / "test" / "original_truth"
    assert fmt.score(truth, truth)["ssim"] == 1.0
    names = [r["name"] for r in test]
    restored = pd.DataFrame({"name": names, "image": [load_rgb(truth / n) for n in names]})
    sub = fmt.write_submission(restored, tmp_path / "out", data=root)
    assert sub == tmp_path / "out" / "original" and sorted(p.name for p in sub.iterdir()) == sorted(names)
    good = fmt.score(tmp_path / "out", truth)
    blurred = fmt.score(root / "test" / "blur", truth)
    assert good["ssim"] > 0.97 and good["ssim"] > blurred["ssim"] and good["psnr"] > blurred["psnr"]

    (sub / names[1]).unlink()
    with pytest.raises(DataError, match=rf"{names[1]}: row 2: field 'image': restored image not found"):
        fmt.score(sub, truth)
    Image.new("RGB", (64, 64)).save(sub / names[1])
    with pytest.raises(DataError, match=rf"{names[1]}: row 2: field 'image': size 64x64 differs"):
        fmt.score(sub, truth)


def test_deblur_bad_rows(ray_local, synth, tmp_path):
    root, fmt = copy_of(synth("deblur", DEBLUR_N), tmp_path), DeblurFormat()
    names = sorted(p.name for p in (root / "train" / "blur").glob("*.jpg"))
    (root / "train" / "original" / names[0]).unlink()  # row 1: blur without its original
    Image.new("RGB", (100, 128)).save(root / "train" / "original" / names[2])  # row 3: sizes differ
    corrupt(root / "train" / "blur" / names[3])  # row 4
    assert_bad(fmt, root, "train", {(names[0], 1): "original", (names[2], 3): "original", (names[3], 4): "blur"},
               n_good=2)
