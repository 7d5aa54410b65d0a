"""Batch jobs that lose nothing: true line numbers past blank lines and extra commas, every good
row kept and every bad one named (a corrupt image in an ImageID-keyed layout, a predictor error on
one row), outputs written whole so a rerun after a killed job finishes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facelab.errors import DataError
from facelab.formats.base import ERROR, ROW, read_table


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _mangle(path: Path, *, blank_after: int, extra_comma: int) -> None:
    """A blank line after line `blank_after`, an extra comma at the end of line `extra_comma`
    (1-based lines of the file as it is now; `extra_comma` counted before the blank line goes in)."""
    lines = _lines(path)
    lines[extra_comma - 1] = lines[extra_comma - 1].rstrip("\n") + ",oops\n"
    lines.insert(blank_after, "\n")
    path.write_text("".join(lines))


def test_read_table_counts_true_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n\n2,y\n3,z,extra\n4,w\n")
    table = read_table(path, ["a", "b"], malformed="mark").to_pandas()
    assert table[ROW].tolist() == [2, 4, 5, 6] and table["a"].tolist() == ["1", "2", "3", "4"]
    assert [bool(e) for e in table[ERROR]] == [False, False, True, False]
    with pytest.raises(DataError, match=r"t.csv: row 5: 3 fields where the header has 2"):
        read_table(path, ["a"])
    skipped = read_table(path, ["a"], malformed="skip").to_pandas()
    assert skipped[ROW].tolist() == [2, 4, 6]


def test_sentiment_blank_line_and_extra_comma(tmp_path, ray_local):
    from facelab.formats import get_format

    fmt = get_format("sentiment")
    data = fmt.synthesize(tmp_path / "d", n=20, seed=0)
    test = data / "test.csv"
    n = len(pd.read_csv(test))
    _mangle(test, blank_after=3, extra_comma=6)  # the extra comma's line becomes line 7
    read = fmt.read(data, "test", skip_bad=True)
    rows = read.dataset.to_pandas()
    assert len(rows) == n - 1
    assert [(Path(b.file).name, b.row, b.field) for b in read.bad] == [("test.csv", 7, "-")]
    assert "fields where the header has" in read.bad[0].reason
    lines = [i + 1 for i, line in enumerate(_lines(test)) if line.strip()][1:]  # data lines, header left out
    assert sorted(rows[ROW]) == [line for line in lines if line != 7]
    with pytest.raises(DataError, match=r"test.csv: row 7: "):
        fmt.read(data, "test")


def test_corrupt_image_among_many_keeps_every_other_row(tmp_path, ray_local):
    """The ImageID-keyed hole: one truncated test JPEG, the submission keeps all the others and
    the bad one is named with its line in sample_submission.csv."""
    from facelab.formats import get_format

    fmt = get_format("age-bins")
    data = fmt.synthesize(tmp_path / "d", n=10, seed=0)
    template = pd.read_csv(data / "sample_submission.csv", dtype=str)
    victim = template["ImageID"][2]
    jpeg = data / "test" / f"{victim}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:120])
    read = fmt.read(data, "test", skip_bad=True)
    assert [(Path(b.file).name, b.row, b.field) for b in read.bad] == [("sample_submission.csv", 4, "ImageID")]
    rows = read.dataset.to_pandas()
    predictions = pd.DataFrame({"image_id": rows["image_id"], "label": "10-20"})
    with pytest.raises(DataError, match=rf"sample_submission.csv: row 4: field 'ImageID': no prediction for ImageID '{victim}'"):
        fmt.write_submission(predictions, tmp_path / "sub.csv", data=data)
    written = fmt.write_submission(predictions, tmp_path / "sub.csv", data=data, complete=False)
    sub = pd.read_csv(written, dtype=str)
    assert sub["ImageID"].tolist() == [i for i in template["ImageID"] if i != victim]


def test_predictor_error_on_one_row_loses_only_that_row(ray_local):
    from types import SimpleNamespace

    from facelab.predict import BadRowSink, predict_dataset

    class Flaky:
        def __init__(self, model_dir):
            pass

        def __call__(self, batch):
            if (batch["_row"] % 7 == 3).any():
                raise ValueError("cannot predict\nthis row")
            return {"_row": batch["_row"], "y": batch["x"] * 2}

    task = SimpleNamespace(predictor_class=Flaky, predict_batch_size=None, predict_on_gpu=False)
    data = ray_local.data.from_pandas(pd.DataFrame({"_file": "f.csv", "_row": np.arange(2, 42), "x": np.arange(40)}))
    sink = ray_local.remote(num_cpus=0)(BadRowSink).remote()
    out = predict_dataset(task, Path("."), data, actors=1, batch_size=8, sink=sink)
    failed = ray_local.get(sink.all.remote())
    assert [b.row for b in failed] == [r for r in range(2, 42) if r % 7 == 3]
    assert failed[0].reason == "prediction failed (ValueError: cannot predict this row)"
    assert out["_row"].tolist() == [r for r in range(2, 42) if r % 7 != 3]
    assert (out["y"] == (out["_row"] - 2) * 2).all()


@pytest.fixture(scope="module")
def sentiment_store(tmp_path_factory, ray_local):
    """A tiny stored sentiment model (seconds): 2-fold ensemble of a linear SVC."""
    from facelab.formats import get_format
    from facelab.train import train

    root = tmp_path_factory.mktemp("skipbad")
    data = get_format("sentiment").synthesize(root / "data", n=60, seed=1)
    store = str(root / "store")
    train("sentiment", data, store, config={"ensemble_folds": 2, "cv_folds": 2}, promote=True)
    return data, store


def test_submit_skip_bad_keeps_every_good_row_with_true_lines(tmp_path, sentiment_store):
    import shutil

    from facelab.predict import submit

    data = tmp_path / "data"
    shutil.copytree(sentiment_store[0], data)
    test = data / "test.csv"
    n = len(pd.read_csv(test))
    _mangle(test, blank_after=4, extra_comma=9)  # the extra comma's line becomes line 10
    lines = _lines(test)
    fields = next(csv.reader([lines[14]]))
    lines[14] = f'"[1, 2]",{",".join(fields[1:])}\n' if len(fields) > 1 else '"[1, 2]"\n'  # line 15: wrong length
    test.write_text("".join(lines))
    out = tmp_path / "sub.csv"
    with pytest.raises(DataError, match=r"test.csv: row 10: "):
        submit("sentiment", data, out, sentiment_store[1])
    assert not out.exists()
    # a torn submission and a leftover temporary file of a killed run: the rerun replaces them
    out.write_text("label\nneg")
    (tmp_path / ".sub.tmp-dead.csv").write_text("torn")
    result = submit("sentiment", data, out, sentiment_store[1], skip_bad=True)
    assert result["rows"] == n - 2 and result["bad_rows"] == 2
    bad = pd.read_csv(result["bad_rows_file"])
    assert bad["row"].tolist() == [10, 15] and set(bad["file"]) == {str(test)}
    assert bad["field"].tolist() == ["-", "embeddings"]
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)  # sentiment's layout: rejected rows stay, unlabelled
    assert len(sub) == n and (sub["label"] != "").sum() == n - 2
    assert (sub["label"][[7, 12]] == "").all()  # lines 10 and 15 are data rows 7 and 12 (a blank line before)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name and p.name != ".sub.tmp-dead.csv"]
    # fixed data: the stale side file goes, the submission has every row
    shutil.copy(sentiment_store[0] / "test.csv", test)
    result = submit("sentiment", data, out, sentiment_store[1], skip_bad=True)
    assert result["bad_rows"] == 0 and len(pd.read_csv(out)) == n
    assert not Path(f"{out}.bad_rows.csv").exists()


def test_a_row_that_passes_its_checks_but_does_not_convert_is_that_rows_error(ray_local):
    """`parse_batch` failing on one row (after `check_row` passed it) names that row; the others convert."""
    import ray

    from facelab.formats.base import FILE, validated

    rows = pd.DataFrame({FILE: "pairs.csv", ROW: range(2, 12), "fold": [str(i) for i in range(9)] + ["1e400x"]})

    def parse(batch: pd.DataFrame) -> pd.DataFrame:
        return batch.assign(fold=batch["fold"].astype(int))

    read = validated(ray.data.from_pandas(rows), lambda r: None, parse, skip_bad=True)
    assert read.dataset.to_pandas()["fold"].tolist() == list(range(9))
    [bad] = read.bad
    assert (bad.file, bad.row, bad.field) == ("pairs.csv", 11, "-")
    assert bad.reason.startswith("could not convert the row: ValueError") and "1e400x" in bad.reason
    with pytest.raises(DataError, match=r"pairs.csv: row 11: could not convert the row: ValueError"):
        validated(ray.data.from_pandas(rows), lambda r: None, parse, skip_bad=False)


@pytest.mark.parametrize("shape", ["frame", "table", "dicts"])
def test_validation_runs_in_blocks_for_every_cpu_and_keeps_row_order_and_bad_rows(ray_local, shape, monkeypatch):
    """Rows given as a frame, a table or dicts are checked in two blocks per cluster CPU once there are
    enough of them (one block for a few rows, not one per row), and the good rows and bad ones are
    the same whatever the blocks."""
    import pyarrow as pa

    import facelab.formats.base as base

    monkeypatch.setattr(base, "MIN_BLOCK_ROWS", 10)
    cpus = int(ray_local.cluster_resources()["CPU"])
    frame = pd.DataFrame({base.FILE: "rows.csv", ROW: range(2, 2 + 25 * cpus), "value": range(25 * cpus)})
    rows = {"frame": frame, "table": pa.Table.from_pandas(frame, preserve_index=False),
            "dicts": frame.to_dict("records")}[shape]

    def check(row: dict) -> None:
        if row["value"] % 7 == 3:
            raise base.FieldError("value", "a multiple of 7 plus 3")

    assert base.row_blocks(rows).num_blocks() == 2 * cpus
    assert base.row_blocks(rows[:5] if shape != "table" else rows.slice(0, 5)).num_blocks() == 1
    read = base.validated(rows, check, skip_bad=True)
    good = read.dataset.to_pandas()
    assert sorted(good["value"]) == [v for v in range(25 * cpus) if v % 7 != 3]
    assert [b.row for b in read.bad] == [v + 2 for v in range(25 * cpus) if v % 7 == 3]
    assert all((b.file, b.field) == ("rows.csv", "value") for b in read.bad)
