"""What every challenge layout provides, and the one validation mechanism they share.

A reader builds the *raw* rows (strings and paths, plus `_file` and `_row` so every problem can be
named), then `validated` checks each row in parallel, in blocks sized by `row_blocks`: with `skip_bad=False`
the first bad row raises a DataError naming file, row and field; with `skip_bad=True` the
good rows go on and the bad ones come back as BadRow records for a side file.
"""

from __future__ import annotations

import csv
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from facelab.atomic import replacing
from facelab.errors import BadRow, DataError, FieldError

ROW = "_row"
FILE = "_file"
ERROR = "_error"
# CPUs of each Ray Data step left lazy for a trainer to run (Ray Data asks 1 by default): a Train
# worker may hold all but a fraction of every node's CPUs (a trial's 1.99 of a 2-CPU node), and a
# step that needs a whole CPU then fits nowhere and waits forever
LAZY_STEP_CPUS = 0.5
# Rows per validation block at least: a block is a Ray task per step, and a task per row (what
# `from_items` made of 75 images) took 10.5 s to read them, one block 2.5 s (bench/batch_submit.py's data)
MIN_BLOCK_ROWS = 512


@dataclass
class Read:
    """The good rows of a split as a Ray Dataset, and the rejected ones."""

    dataset: "ray.data.Dataset"  # noqa: F821
    bad: list[BadRow] = field(default_factory=list)


class Format(ABC):
    """One challenge's file layout: read it, write its submission, score one, synthesize one."""

    task: str  # the challenge task whose layout this is
    splits: tuple[str, ...] = ("train", "val", "test")
    # where `synthesize` puts the labelled test truth that `score` takes, relative to its folder
    synthetic_truth: str | None = None
    # the file (or folder) name a submission job writes by default
    submission_name: str = "submission.csv"

    @abstractmethod
    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        """Read one split of the layout under `root` as a Ray Dataset."""

    @abstractmethod
    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        """Write predictions (columns documented per format) in the challenge's submission layout.
        `complete=False` (a --skip-bad job that rejected rows): rows of the test listing with no
        prediction are left out instead of refused; their reasons are in the job's side file."""

    @abstractmethod
    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        """Score a submission against the labelled truth in the challenge's own layout."""

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        """Pictures of a scored submission (confusion matrix, curves), written into `out`."""
        return []

    @abstractmethod
    def synthesize(self, out: Path, *, n: int, seed: int) -> Path:
        """Write a small, seeded, learnable dataset in exactly the challenge layout."""


def split_sizes(n: int, minimum: int = 2) -> dict[str, int]:
    """Synthetic split sizes in the Blitz proportions: n train, 2n/5 val, 3n/5 test."""
    return {"train": n, "val": max(n * 2 // 5, minimum), "test": max(n * 3 // 5, minimum)}


def read_table(
    path: Path,
    required: Iterable[str],
    *,
    delimiter: str = ",",
    malformed: str = "raise",
) -> pa.Table:
    """Read a CSV with every column as text, add `_file` and `_row` (the row's true 1-based line in
    the file: blank lines are skipped but still counted).

    A missing file or column is a DataError that names the file and the column. A row with the
    wrong number of fields (an extra comma, a missing one) is, by `malformed`: "raise", a DataError
    naming its line; "mark", kept with an `_error` column (every row gets one, "" when fine) that
    `validated` reports as that row's problem; "skip", left out (its reader reported it already).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(BadRow(str(path), 0, "-", "file not found"))
    rows, lines, errors = [], [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, [])
            for row in reader:
                if not row or (len(row) != len(header) and not any(value.strip() for value in row)):
                    continue  # a blank line
                error = ""
                if len(row) != len(header):
                    bad = BadRow(str(path), reader.line_num, "-",
                                 f"{len(row)} fields where the header has {len(header)} ({delimiter!r}-separated)")
                    if malformed == "raise":
                        raise DataError(bad)
                    if malformed == "skip":
                        continue
                    error = json.dumps([bad.field, bad.reason])
                    row = (row + [""] * len(header))[:len(header)]
                rows.append(row)
                lines.append(reader.line_num)
                errors.append(error)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(BadRow(str(path), 0, "-", f"not a readable CSV: {exc}")) from exc
    if len(set(header)) != len(header):
        raise DataError(BadRow(str(path), 1, "-", f"repeated column names {header}"))
    for name in required:
        if name not in header:
            raise DataError(BadRow(str(path), 1, name, f"missing column (found {header})"))
    columns = {name: pa.array([row[i] for row in rows], pa.string()) for i, name in enumerate(header)}
    table = pa.table({**columns, FILE: pa.array([str(path)] * len(rows), pa.string()),
                      ROW: pa.array(lines, pa.int64())})
    return table.append_column(ERROR, pa.array(errors, pa.string())) if malformed == "mark" else table


def _row_error(exc: Exception, stage: str = "") -> str:
    if isinstance(exc, FieldError):
        return json.dumps([exc.field, exc.reason])
    return json.dumps(["-", f"{stage}{type(exc).__name__}: {' '.join(str(exc).split())}"])


def _mark_batch(batch: pd.DataFrame, check_row: Callable[[dict], None],
                parse_batch: Callable[[pd.DataFrame], Any] | None = None) -> pd.DataFrame:
    """The batch with its ERROR column: "" for a good row, else [field, reason] as JSON. A row that
    passes `check_row` must also convert: `parse_batch` is tried on the good rows together and,
    when that fails, on each alone, so a row it cannot convert is that row's error, not the job's."""
    errors = []
    for record in batch.to_dict("records"):
        if record.get(ERROR):  # found while reading the file (e.g. a wrong number of fields)
            errors.append(record[ERROR])
            continue
        try:
            check_row(record)
            errors.append("")
        except Exception as exc:  # noqa: BLE001 - any problem of one row is that row's, never the job's
            errors.append(_row_error(exc))
    batch[ERROR] = errors
    good = [i for i, e in enumerate(errors) if not e]
    if parse_batch is not None and good:
        try:
            parse_batch(batch.iloc[good].drop(columns=[ERROR]))
        except Exception:  # noqa: BLE001 - find the row(s) that do not convert
            for i in good:
                try:
                    parse_batch(batch.iloc[[i]].drop(columns=[ERROR]))
                except Exception as exc:  # noqa: BLE001 - that row's problem
                    batch.iloc[i, batch.columns.get_loc(ERROR)] = _row_error(exc, "could not convert the row: ")
    return batch


def rows_per_block(rows: int, minimum: int, maximum: int | None = None, per_cpu: float = 2) -> int:
    """Rows per block so that `rows` make `per_cpu` blocks for every CPU of the cluster, within
    [minimum, maximum]: one wave of tasks keeps every CPU busy."""
    import ray

    if not ray.is_initialized():  # a reader called outside a job: start Ray as the first Dataset would
        from facelab.cluster import connect

        connect()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(minimum, math.ceil(rows / (per_cpu * cpus)))
    return min(size, maximum) if maximum else size


def row_blocks(rows: "pd.DataFrame | pa.Table | list[dict]") -> "ray.data.Dataset":  # noqa: F821
    """The rows as a Dataset of blocks every CPU of the cluster can check at once (two per CPU, each
    of at least MIN_BLOCK_ROWS rows): `from_pandas` and `from_arrow` make one block, which one task
    checks alone, and `from_items` one per row."""
    import ray

    rows = pd.DataFrame(rows) if isinstance(rows, list) else rows
    size = rows_per_block(len(rows), MIN_BLOCK_ROWS)
    parts = [rows.slice(i, size) if isinstance(rows, pa.Table) else rows.iloc[i:i + size]
             for i in range(0, len(rows), size)] or [rows]
    return ray.data.from_arrow(parts) if isinstance(rows, pa.Table) else ray.data.from_pandas(parts)


def validated(
    raw: "ray.data.Dataset | pd.DataFrame | pa.Table | list[dict]",  # noqa: F821
    check_row: Callable[[dict], None],
    parse_batch: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    *,
    skip_bad: bool,
) -> Read:
    """Check every row of `raw` in parallel (rows not yet a Dataset in `row_blocks`); return the
    parsed good rows and the bad ones.

    `check_row` raises FieldError(field, reason) for a bad row; `parse_batch` turns good raw
    rows into model-ready columns (it may rely on `check_row` having passed). A row that passes
    its checks but that `parse_batch` cannot convert is a bad row too (tried while checking).
    """
    import ray

    raw = raw if isinstance(raw, ray.data.Dataset) else row_blocks(raw)
    marked = raw.map_batches(_mark_batch, fn_kwargs={"check_row": check_row, "parse_batch": parse_batch},
                             batch_format="pandas").materialize()
    from ray.data.expressions import col

    bad_rows = marked.filter(expr=col(ERROR) != "").take_all()
    bad = sorted(
        (BadRow(r[FILE], int(r[ROW]), *json.loads(r[ERROR])) for r in bad_rows),
        key=lambda b: (b.file, b.row),
    )
    if bad and not skip_bad:
        raise DataError(bad[0], bad)
    good = marked.filter(expr=col(ERROR) == "", num_cpus=LAZY_STEP_CPUS).drop_columns([ERROR])
    if parse_batch is not None:
        good = good.map_batches(parse_batch, batch_format="pandas", num_cpus=LAZY_STEP_CPUS)
    return Read(good, bad)


def write_bad_rows(bad: list[BadRow], path: Path) -> Path | None:
    """The side file for --skip-bad: one CSV line per rejected row, with its reason."""
    if not bad:
        return None
    path = Path(path)
    with replacing(path) as tmp:
        pd.DataFrame([b.as_dict() for b in bad], columns=["file", "row", "field", "reason"]).to_csv(tmp, index=False)
    return path


def require_file(path: Path, what: str) -> Path:
    """A missing challenge file names itself."""
    path = Path(path)
    if not path.exists():
        raise DataError(BadRow(str(path), 0, "-", f"{what} not found"))
    return path
