"""Every registered reader fuzzed (hypothesis): a small valid synthetic data set, one corruption per
case, read with --skip-bad. The case passes when either

- the read finishes, every row the corruption did not touch comes back with exactly its clean value,
  no returned row carries a value the clean data set does not hold (a row whose bytes were flipped
  may: a digit flipped into another digit is no error any reader can see), a touched row that must
  be rejected is not returned, and every corrupted row is named by a bad row with its file and true
  line (or item index); or
- it fails with a one-line FacelabError that names the corrupted file (a whole-file problem: a
  truncated .npy, a missing column, a row count that no longer matches its .npy...).

Anything else (another exception, a traceback, a multi-line message) fails the case. The corruptions:
CSV rows (a mangled number or label, an extra or a missing field, blank lines, a duplicated,
swapped or truncated row, flipped bytes), CSV columns (dropped, duplicated, reordered), images
(truncated, garbage, missing, resized), `.npy` matrices (truncated, empty, garbage, a row more or
less, another dimension or dtype, trailing bytes, a NaN row), the FairFace parquet (truncated, a
NaN, short, null or missing embedding, a repeated key) and VOC annotations (truncated, a number
that is not one, swapped corners, a missing file). Case counts per format are printed at the end of
the session (tests/data/conftest.py). FACELAB_FUZZ_EXAMPLES sets the cases per format (default 20).
"""

from __future__ import annotations

import collections
import csv
import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facelab.errors import FacelabError
from facelab.formats import FORMAT_NAMES, get_format

EXAMPLES = int(os.environ.get("FACELAB_FUZZ_EXAMPLES", "20"))
CASES: collections.Counter = collections.Counter()  # (format, outcome) -> cases; printed by conftest
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")

# invalid cell values per file name (or "*") and column: each makes its row a bad row
NOT_AN_ID = ["", "../escape", "nosuchimage"]
BLITZ = {"train": ("train",), "test": ("test/", "sample_submission")}  # the files each split reads
SPECS = {
    "sentiment": dict(splits=("train", "test"), parts={"train": ("train",), "test": ("test",)}, invalid={"*": {
        "embeddings": ["", "[1, 2]", "not json", "[\"a\"]", "[" + ", ".join(["1"] * 511 + ["NaN"]) + "]",
                       "[" + ", ".join(["1e999"] * 512) + "]", "{}"],
        "label": ["", "Negative", "positive ", "03-Sep", "unknown"]}}),
    "age-bins": dict(splits=("train", "test"), parts=BLITZ, invalid={"*": {
        "ImageID": NOT_AN_ID, "age": ["", "10-19", "0-9", "100-110", "abc"]},
        "sample_submission.csv": {"ImageID": NOT_AN_ID}}),
    "mask": dict(splits=("train", "test"), parts=BLITZ, invalid={"*": {
        "ImageID": NOT_AN_ID, "masktype": ["", "FFP2", "n95"],
        "bbox": ["", "[1, 2, 3]", "[10, 10, 5, 5]", "[0, 0, 9999, 10]", "[-1, 0, 10, 10]", "[NaN, 0, 1, 1]",
                 "[1e999, 0, 1, 1]", "x", "[true, 0, 1, 1]"]},
        "sample_submission.csv": {"ImageID": NOT_AN_ID}}),
    "crowd": dict(splits=("test",), n=1, resize={"target_path"}),
    "deblur": dict(splits=("train", "test"), parts={"train": ("train/",), "test": ("test/",)}, resize={"original_path"}),
    "occlusion": dict(splits=("train", "test"), parts={"train": ("train_",), "test": ("test_",)}, invalid={"*": {
        "filename": ["", "../escape.jpg", "/abs.jpg", "database1/none.jpg"],
        "FaceOcclusion": ["abc", "1.5", "-0.1", "inf", "1e999", "0,5"], "gender": ["x", "2", "-1", "inf"]}}),
    "tracks": dict(splits=("train", "test"), n=3, parts={"train": ("train",), "test": ("test", "track_order")}, frames={"train_df.csv": "train", "test_df.csv": "test"},
                   invalid={"*": {"track_id": [""], "frame_id": ["x", "1.5", ""], "is_val": ["maybe", ""],
                                  "person_id": [""]},
                            "train_df_track_order_df.csv": {"track_id": [""], "person_id": ["", "zz_other"]},
                            "track_order_df.csv": {"track_id": [""]}}),
    "fairface": dict(splits=("train", "test"), parts={s: (f"fairface_label_{s}",) for s in ("train", "test")}, invalid={"*": {
        "file": ["", "train/nosuch.jpg"], "age": ["03-Sep", "Oct-19", "10-20", "", "more than 80"],
        "gender": ["male", ""], "race": ["white", "", "Asian"]},
        "fairface_label_test.csv": {"file": ["", "test/nosuch.jpg"], "age": ["03-Sep", "10-20"], "gender": ["male"],
                                    "race": ["white"]}}),
    "detect": dict(splits=("val",)),
    "emotion": dict(splits=("train", "val", "test"), invalid={"*": {
        "file": ["", "../x.jpg", "/abs.jpg", "train/happy/nosuch.jpg"], "Usage": ["Train", "", "training"],
        "emotion_name": ["Happy", "", "contempt"], "emotion": ["9", "-1", "x", ""]}}),
    "synth": dict(splits=("train", "val"), invalid={"*": {
        "file": ["", "../x.jpg", "/abs.jpg", "images/nosuch.jpg"], "age": ["-1", "117", "x", "3.5", ""],
        "gender": ["2", "x", ""], "race": ["5", "", "-0"]}}),
    "verify": dict(splits=("pairs",), invalid={"*": {
        "fold": ["0", "x", "-1", ""], "file_a": ["", "../x.jpg", "images/none.jpg"],
        "file_b": ["/abs.jpg", "images/p01/9.jpg"], "same": ["2", "yes", ""]}}),
}
SPECS["age-gender"] = dict(SPECS["synth"], splits=("train", "val", "test"))
# utkface/labels.csv and fer2013/labels.csv under one root: each column's invalid values are
# its source's (only `file` is in both: values invalid in either layout)
SPECS["backbone"] = dict(splits=("train", "val", "test"), invalid={"*": {
    **{k: v for k, v in SPECS["synth"]["invalid"]["*"].items() if k != "file"},
    **{k: v for k, v in SPECS["emotion"]["invalid"]["*"].items() if k != "file"},
    "file": ["", "../x.jpg", "/abs.jpg", "nosuch/none.jpg"]}})


# --- the clean data set and its reading -------------------------------------------------------

def fingerprint(row: dict) -> tuple:
    """A row's values (not where it came from) as something hashable."""
    def value(v):
        if isinstance(v, np.ndarray):
            return (v.shape, str(v.dtype), v.tobytes())
        if isinstance(v, float) and np.isnan(v):
            return "nan"
        if isinstance(v, (list, tuple)):
            return tuple(value(x) for x in v)
        return v
    return tuple(sorted((k, value(v)) for k, v in row.items() if k not in ("_file", "_row", "_split")))


def read_all(fmt, folder: Path, splits) -> tuple[list[dict], list]:
    rows, bad = [], []
    for split in splits:
        read = fmt.read(folder, split, skip_bad=True)
        rows += [dict(r, _split=split) for r in read.dataset.take_all()]
        bad += read.bad
    return rows, bad


def splits_reading(name: str, rel: str) -> tuple[str, ...]:
    """The splits whose reading a corrupted file can change (all of them when unsure)."""
    spec = SPECS[name]
    hit = tuple(s for s, prefixes in spec.get("parts", {}).items() if rel.startswith(prefixes))
    return hit or spec["splits"]


@dataclass
class Clean:
    name: str
    folder: Path
    rows: list[dict]
    fps: list[tuple]
    csvs: dict[str, str]  # relative path -> delimiter, every CSV the reader reads


@pytest.fixture(scope="module")
def clean_sets(tmp_path_factory, ray_local):
    cache: dict[str, Clean] = {}

    def get(name: str) -> Clean:
        if name not in cache:
            spec, fmt = SPECS[name], get_format(name)
            folder = fmt.synthesize(tmp_path_factory.mktemp(name) / "data", n=spec.get("n", 4), seed=3).resolve()
            rows, bad = read_all(fmt, folder, spec["splits"])
            assert not bad and rows, (name, bad[:3])
            listed = {Path(r["_file"]).relative_to(folder).as_posix() for r in rows if r["_file"].endswith(".csv")}
            listed |= set(spec.get("frames", {}))
            delimiter = " " if name == "occlusion" else ","
            cache[name] = Clean(name, folder, rows, [fingerprint(r) for r in rows], {p: delimiter for p in listed})
        return cache[name]

    return get


# --- what a corruption expects ----------------------------------------------------------------

@dataclass
class Expect:
    """`touched`: clean row index -> "bad" (must not come back) or "any" (may come back changed);
    `gone`: rows no longer in the data; `extra`: more good copies of clean rows allowed; `named`:
    (line, acceptable file names) a bad row must name; `fail`: "never" | "may" | "must" be a
    whole-file error, which must name one of `files`."""

    files: set[str]
    touched: dict[int, str] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    extra: list[tuple] = field(default_factory=list)
    named: list[tuple[int, set[str]]] = field(default_factory=list)
    fail: str = "never"
    what: str = ""
    rel: str = ""  # the corrupted file, relative to the data folder


def rows_of(clean: Clean, path: Path, line: int | None = None) -> list[int]:
    """Clean rows that come from `path` (at `line`), or that point at it as an image path."""
    path = str(path)
    return [i for i, r in enumerate(clean.rows)
            if (r["_file"] == path and (line is None or r["_row"] == line))
            or (line is None and any(k.endswith("path") and r[k] == path for k in r))]


def names(row: dict, *more: str) -> set[str]:
    return {Path(row["_file"]).name, *more} | {Path(v).name for k, v in row.items() if k.endswith("path") and v}


def frame_tracks(clean: Clean, rel: str, line: int) -> list[int]:
    """tracks: the clean track rows that hold the frame on `line` of a frames CSV."""
    frames = pd.read_csv(clean.folder / rel, dtype=str, keep_default_na=False)
    track = frames["track_id"].iloc[line - 2]
    order = "train_df_track_order_df.csv" if rel.startswith("train") else "track_order_df.csv"
    return [i for i, r in enumerate(clean.rows) if r["track_id"] == track and r["_file"].endswith(order)]


# --- corruptions ------------------------------------------------------------------------------

def split_line(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def join_line(fields: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(fields)
    return out.getvalue()


def corrupt_csv(draw, clean: Clean, rel: str) -> Expect:
    spec, path = SPECS[clean.name], clean.folder / rel
    delimiter = clean.csvs[rel]
    frames = rel in spec.get("frames", {})  # row-aligned with a .npy: its rows cannot move
    npy_name = {"train_df.csv": "train_df_descriptors.npy", "test_df.csv": "test_descriptors.npy"}.get(rel)
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = [[i + 1, line] for i, line in enumerate(lines)]  # [original line, text]
    header = split_line(lines[0], delimiter)
    n = len(entries) - 1
    invalid = {**spec.get("invalid", {}).get("*", {}), **spec.get("invalid", {}).get(Path(rel).name, {})}
    invalid = {c: v for c, v in invalid.items() if c in header}
    kinds = ["extra_field", "blank_lines", "truncate_lines", "dup_row", "flip", "drop_column",
             "dup_column", "reorder_columns"] + (["mangle"] * 3 if invalid else [])
    kinds += [] if frames else ["swap_rows"]
    kinds += ["missing_field", "truncate_mid"] if len(header) > 1 else []
    kind = draw(st.sampled_from(sorted(kinds)))
    expect = Expect(files={path.name}, what=f"{rel}: {kind}")
    hit = None  # (original line, policy) of the one row a row corruption breaks

    row = draw(st.integers(1, n))
    if kind == "mangle":
        column = draw(st.sampled_from(sorted(invalid)))
        value = draw(st.sampled_from(invalid[column]))
        fields = split_line(entries[row][1], delimiter)
        fields[header.index(column)] = value
        entries[row][1] = join_line(fields, delimiter)
        expect.what += f" line {row + 1} {column}={value!r}"
        hit = (row + 1, "bad")
    elif kind == "extra_field":
        entries[row][1] += delimiter + draw(st.sampled_from(["x", "", "1"]))
        hit = (row + 1, "bad")
    elif kind == "missing_field":
        entries[row][1] = join_line(split_line(entries[row][1], delimiter)[:-1], delimiter)
        hit = (row + 1, "bad")
    elif kind == "blank_lines":
        for at in sorted(draw(st.lists(st.integers(1, n + 1), min_size=1, max_size=3)), reverse=True):
            entries.insert(at, [None, draw(st.sampled_from(["", "   " if delimiter == "," else ""]))])
    elif kind == "dup_row":
        entries.insert(row + 1, [None, entries[row][1]])
        if frames:
            expect.fail, expect.files = "must", {path.name, npy_name}
        else:
            expect.extra += [clean.fps[i] for i in rows_of(clean, path, row + 1)]
    elif kind == "swap_rows":
        other = draw(st.integers(1, n))
        entries[row], entries[other] = entries[other], entries[row]
    elif kind in ("truncate_lines", "truncate_mid"):
        keep = draw(st.integers(0, n - 1)) if kind == "truncate_lines" else row - 1
        for lost in entries[keep + 1:]:
            expect.gone.update(rows_of(clean, path, lost[0]))
        if kind == "truncate_mid":
            fields = split_line(entries[row][1], delimiter)
            prefix = join_line(fields[:-1], delimiter)  # cut before the last delimiter: too few fields
            entries = entries[:row] + [[row + 1, prefix[:draw(st.integers(1, max(len(prefix), 1)))]]]
            hit = (row + 1, "bad")
            expect.gone -= set(rows_of(clean, path, row + 1))
        else:
            entries = entries[:keep + 1]
        if frames:
            expect.fail, expect.files = "must", {path.name, npy_name}
    elif kind == "flip":
        at = draw(st.integers(0, n))
        text = entries[at][1]
        spots = [i for i, c in enumerate(text) if c not in f'"\n\r{delimiter}']
        if spots:
            i = draw(st.sampled_from(spots))
            entries[at][1] = text[:i] + draw(st.sampled_from(["x", "9", "\u00e9", "\x00", "-", "."])) + text[i + 1:]
        expect.fail = "may"
        if at == 0:  # a renamed column: a missing column, or one nobody reads
            expect.what += " (header)"
        else:
            hit = (at + 1, "any")
    else:  # column operations on every line
        j = draw(st.integers(0, len(header) - 1))
        order = list(range(len(header)))
        if kind == "drop_column":
            order.pop(j)
            expect.fail = "may"
        elif kind == "dup_column":
            order.insert(j, j)
            expect.fail = "may"
        else:
            order = draw(st.permutations(order))
        expect.what += f" {header[j]}"
        for entry in entries:
            fields = split_line(entry[1], delimiter)
            entry[1] = join_line([fields[k] for k in order], delimiter)

    if hit is not None:
        line, policy = hit
        now = next(i for i, e in enumerate(entries) if e[0] == line) + 1  # its true line after the change
        touched = frame_tracks(clean, rel, line) if frames else rows_of(clean, path, line)
        for i in touched:
            expect.touched[i] = "any" if frames else policy
        if policy == "bad":
            expect.named.append((now, {path.name} | set().union(*(names(clean.rows[i]) for i in touched))))
    text = "\n".join(e[1] for e in entries) + ("" if kind == "truncate_mid" else "\n")
    path.write_bytes(text.encode("utf-8"))
    return expect


def corrupt_image(draw, clean: Clean, rel: str) -> Expect:
    path = clean.folder / rel
    touched = rows_of(clean, path)
    resize = SPECS[clean.name].get("resize", set())
    must_size = [i for i in touched if any(clean.rows[i].get(k) == str(path) for k in resize)]
    kind = draw(st.sampled_from(["truncate", "garbage", "delete", "empty"] + (["resize"] if must_size else [])))
    expect = Expect(files={path.name}, what=f"{rel}: {kind}")
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[:draw(st.integers(1, len(data) // 2))])
    elif kind == "garbage":
        path.write_bytes(draw(st.binary(min_size=1, max_size=300)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "delete":
        path.unlink()
    else:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.resize((im.width // 2, im.height // 2)).save(path, format=im.format)
        touched = must_size
    for i in touched:
        expect.touched[i] = "bad"
        row = clean.rows[i]
        listed_by_itself = kind == "delete" and row["_file"] == str(path)
        if not listed_by_itself:
            expect.named.append((int(row["_row"]), names(row, path.name)))
    return expect


def corrupt_xml(draw, clean: Clean, rel: str) -> Expect:
    path = clean.folder / rel
    text = path.read_text()
    kind = draw(st.sampled_from(["truncate", "not_a_number", "swap_corners", "delete", "root", "no_name"]))
    if kind == "truncate":
        text = text[:draw(st.integers(0, text.index("</annotation>") - 1))]
    elif kind == "not_a_number":
        tag = draw(st.sampled_from(["xmin", "ymin", "xmax", "ymax"]))
        text = re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{draw(st.sampled_from(['abc', '', 'nan', 'inf', '1e999']))}</{tag}>",
                      text, count=1)
    elif kind == "swap_corners":
        x0, x1 = re.search("<xmin>([^<]*)</xmin>", text)[1], re.search("<xmax>([^<]*)</xmax>", text)[1]
        text = text.replace(f"<xmin>{x0}</xmin>", f"<xmin>{x1}</xmin>", 1).replace(f"<xmax>{x1}</xmax>", f"<xmax>{x0}</xmax>", 1)
    elif kind == "root":
        text = text.replace("<annotation>", "<annot>", 1).replace("</annotation>", "</annot>")
    elif kind == "no_name":
        text = re.sub("<name>[^<]*</name>", "<name> </name>", text, count=1)
    if kind == "delete":
        path.unlink()
    else:
        path.write_text(text)
    expect = Expect(files={path.name}, what=f"{rel}: {kind}")
    for i in rows_of(clean, path):
        expect.touched[i] = "bad"
        expect.named.append((int(clean.rows[i]["_row"]), names(clean.rows[i], path.name)))
    return expect


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def corrupt_npy(draw, clean: Clean, rel: str) -> Expect:
    path = clean.folder / rel
    frames = {"train_df_descriptors.npy": "train_df.csv", "test_descriptors.npy": "test_df.csv"}.get(Path(rel).name)
    matrix = np.load(path)
    data = path.read_bytes()
    kind = draw(st.sampled_from(["truncate", "empty", "garbage", "row_less", "row_more", "dim", "dtype_bool",
                                 "dtype_text", "trailing", "nan_row", "header_rows"]))
    expect = Expect(files={path.name}, fail="must", what=f"{rel}: {kind}")
    if kind == "truncate":
        path.write_bytes(data[:draw(st.integers(1, len(data) - 1))])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(draw(st.binary(min_size=1, max_size=200)))
    elif kind == "row_less":
        save_npy(path, matrix[:-1])
    elif kind == "row_more":
        save_npy(path, np.vstack([matrix, matrix[:1]]))
    elif kind == "dim":
        save_npy(path, matrix[:, :-1])
        # the frames and the references must agree: either file may be the one named
        expect.files |= {"train_df_descriptors.npy", "test_descriptors.npy", "train_gt_descriptors.npy",
                         "gt_descriptors.npy"}
    elif kind == "dtype_bool":
        save_npy(path, matrix > 0)
    elif kind == "dtype_text":
        save_npy(path, matrix.astype(str))
    elif kind == "trailing":
        path.write_bytes(data + draw(st.binary(min_size=1, max_size=64)))
    elif kind == "header_rows":  # the header says one row less than the data holds
        save_npy(path, matrix)
        raw = bytearray(path.read_bytes())
        old = f"({matrix.shape[0]}, {matrix.shape[1]})".encode()
        new = f"({matrix.shape[0] - 1}, {matrix.shape[1]})".encode().ljust(len(old))
        at = raw.index(old)
        raw[at:at + len(old)] = new
        path.write_bytes(bytes(raw))
        expect.files.add(frames or path.name)
    else:  # nan_row
        r = draw(st.integers(0, len(matrix) - 1))
        matrix = matrix.copy()
        matrix[r, draw(st.integers(0, matrix.shape[1] - 1))] = np.nan
        save_npy(path, matrix)
        expect.fail = "never"
        if frames:
            for i in frame_tracks(clean, frames, r + 2):
                expect.touched[i] = "any"
            expect.named.append((r + 2, {frames, path.name}))
    if kind in ("row_less", "row_more") and not frames:
        expect.fail = "never"  # the references' rows are not read here, only their dimension
    if frames and kind in ("row_less", "row_more", "header_rows"):
        expect.files.add(frames)
    return expect


def corrupt_parquet(draw, clean: Clean, rel: str) -> Expect:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = clean.folder / rel
    table = pq.read_table(path)
    keys = table.column("file").to_pylist()
    kind = draw(st.sampled_from(["truncate", "nan", "short", "null", "drop", "dup_key", "columns"]))
    expect = Expect(files={path.name}, what=f"{rel}: {kind}")
    r = draw(st.integers(0, len(keys) - 1))
    vectors = table.column("embedding").to_pylist()
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[:draw(st.integers(0, len(data) - 1))])
        expect.fail = "must"
        return expect
    if kind == "nan":
        vectors[r] = [float("nan")] + vectors[r][1:]
    elif kind == "short":
        vectors[r] = vectors[r][:-1]
    elif kind == "null":
        vectors[r] = None
    if kind == "drop":
        table = table.filter(pa.array([i != r for i in range(len(keys))]))
    elif kind == "dup_key":
        table = pa.concat_tables([table, table.slice(r, 1)])
        expect.fail = "may"
    elif kind == "columns":
        table = table.select(list(reversed(table.column_names)))
    else:
        table = table.set_column(table.column_names.index("embedding"), "embedding",
                                 pa.array(vectors, table.schema.field("embedding").type))
    pq.write_table(table, path)
    if kind in ("nan", "short", "null", "drop"):
        for i, row in enumerate(clean.rows):
            if row["file"] == keys[r]:
                expect.touched[i] = "bad"
                expect.named.append((int(row["_row"]), names(row, path.name)))
    return expect


def corrupt(draw, clean: Clean) -> Expect:
    files = sorted(p.relative_to(clean.folder).as_posix() for p in clean.folder.rglob("*") if p.is_file())
    read = {Path(r[k]).relative_to(clean.folder).as_posix() for r in clean.rows for k in r
            if (k.endswith("path") or k == "_file") and isinstance(r[k], str) and r[k].startswith(str(clean.folder))
            and Path(r[k]).is_file()}
    targets = sorted(set(clean.csvs) | {f for f in read if f.lower().endswith(IMAGE_SUFFIXES + (".xml",))}
                     | {f for f in files if f.endswith((".npy", ".parquet"))})
    rel = draw(st.sampled_from(targets))
    if rel in clean.csvs:
        how = corrupt_csv
    elif rel.endswith(".npy"):
        how = corrupt_npy
    elif rel.endswith(".parquet"):
        how = corrupt_parquet
    elif rel.endswith(".xml"):
        how = corrupt_xml
    else:
        how = corrupt_image
    expect = how(draw, clean, rel)
    expect.rel = rel
    return expect


# --- the property -----------------------------------------------------------------------------

def check(clean: Clean, expect: Expect, folder: Path) -> str:
    """Read the corrupted copy; assert the property; return the outcome for the counts."""
    fmt = get_format(clean.name)
    try:
        splits = splits_reading(clean.name, expect.rel)
        rows, bad = read_all(fmt, folder, splits)
    except FacelabError as exc:
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message, f"{expect.what}: a multi-line error:\n{message}"
        assert expect.fail != "never", f"{expect.what}: rejected the whole file: {message}"
        assert any(name in message for name in expect.files), f"{expect.what}: the error names none of {expect.files}: {message}"
        return "file error"
    assert expect.fail != "must", f"{expect.what}: read without an error ({len(rows)} rows, {len(bad)} bad)"
    for b in bad:
        assert "\n" not in str(b), f"{expect.what}: a multi-line bad row {b}"
    good = collections.Counter(fingerprint(r) for r in rows)
    intact = collections.Counter(fp for i, fp in enumerate(clean.fps) if i not in expect.touched
                                 and i not in expect.gone and clean.rows[i]["_split"] in splits)
    missing = intact - good
    assert not missing, f"{expect.what}: {sum(missing.values())} intact rows not read; bad: {bad[:3]}"
    allowed = intact + collections.Counter(expect.extra)
    allowed += collections.Counter(clean.fps[i] for i, p in expect.touched.items() if p == "any")
    unexpected = good - allowed
    changeable = sum(1 for p in expect.touched.values() if p == "any")
    assert sum(unexpected.values()) <= changeable, \
        f"{expect.what}: {sum(unexpected.values())} rows read with values the clean data does not hold " \
        f"(or a corrupted row passed as good); bad: {bad[:3]}"
    for line, acceptable in expect.named:
        assert any(b.row == line and Path(b.file).name in acceptable for b in bad), \
            f"{expect.what}: no bad row names line {line} of {sorted(acceptable)}; bad: {bad[:5]}"
    return "bad rows named" if bad else "read clean"


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_fuzzed_reader(name, clean_sets):
    assert name in SPECS, f"format '{name}' has no fuzz spec here"
    clean = clean_sets(name)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-")) / "data"
        try:
            shutil.copytree(clean.folder, folder)
            clean_here = Clean(clean.name, folder, [relocated(r, clean.folder, folder) for r in clean.rows],
                               clean.fps, clean.csvs)
            clean_here.fps = [fingerprint(r) for r in clean_here.rows]
            expect = corrupt(data.draw, clean_here)
            data.draw(st.just(expect.what), label="corruption")
            outcome = check(clean_here, expect, folder)
            CASES[(name, outcome)] += 1
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)

    case()


def relocated(row: dict, old: Path, new: Path) -> dict:
    """A clean row as it reads from a copy of its folder."""
    return {k: (v.replace(str(old), str(new), 1) if isinstance(v, str) and v.startswith(str(old)) else v)
            for k, v in row.items()}
