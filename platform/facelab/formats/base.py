"""What every challenge layout provides, and the one validation mechanism they share.

A reader builds a *raw* Ray Dataset (strings and paths, plus `_file` and `_row` so every
problem can be named), then `validated` checks each row in parallel: with `skip_bad=False`
the first bad row raises a DataError naming file, row and field; with `skip_bad=True` the
good rows go on and the bad ones come back as BadRow records for a side file.
"""

from __future__ import annotations

import csv
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from facelab.errors import BadRow, DataError, FieldError

ROW = "_row"
FILE = "_file"
ERROR = "_error"


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
    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None) -> Path:
        """Write predictions (columns documented per format) in the challenge's submission layout."""

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
) -> pa.Table:
    """Read a CSV with every column as text, add `_file` and `_row` (1-based file line).

    A missing file or column is a DataError that names the file and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(BadRow(str(path), 0, "-", "file not found"))
    try:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), [])
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(BadRow(str(path), 0, "-", f"not a readable CSV: {exc}")) from exc
    for name in required:
        if name not in table.column_names:
            raise DataError(BadRow(str(path), 1, name, f"missing column (found {table.column_names})"))
    table = table.append_column(FILE, pa.array([str(path)] * table.num_rows, pa.string()))
    return table.append_column(ROW, pa.array(range(2, table.num_rows + 2), pa.int64()))


def _mark_batch(batch: pd.DataFrame, check_row: Callable[[dict], None]) -> pd.DataFrame:
    errors = []
    for record in batch.to_dict("records"):
        try:
            check_row(record)
            errors.append("")
        except FieldError as exc:
            errors.append(json.dumps([exc.field, exc.reason]))
    batch[ERROR] = errors
    return batch


def validated(
    raw: "ray.data.Dataset",  # noqa: F821
    check_row: Callable[[dict], None],
    parse_batch: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    *,
    skip_bad: bool,
) -> Read:
    """Check every row of `raw` in parallel; return the parsed good rows and the bad ones.

    `check_row` raises FieldError(field, reason) for a bad row; `parse_batch` turns good raw
    rows into model-ready columns (it may rely on `check_row` having passed).
    """
    marked = raw.map_batches(_mark_batch, fn_kwargs={"check_row": check_row}, batch_format="pandas").materialize()
    from ray.data.expressions import col

    bad_rows = marked.filter(expr=col(ERROR) != "").take_all()
    bad = sorted(
        (BadRow(r[FILE], int(r[ROW]), *json.loads(r[ERROR])) for r in bad_rows),
        key=lambda b: (b.file, b.row),
    )
    if bad and not skip_bad:
        raise DataError(bad[0], bad)
    good = marked.filter(expr=col(ERROR) == "").drop_columns([ERROR])
    if parse_batch is not None:
        good = good.map_batches(parse_batch, batch_format="pandas")
    return Read(good, bad)


def write_bad_rows(bad: list[BadRow], path: Path) -> Path | None:
    """The side file for --skip-bad: one CSV line per rejected row, with its reason."""
    if not bad:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([b.as_dict() for b in bad], columns=["file", "row", "field", "reason"]).to_csv(path, index=False)
    return path


def require_file(path: Path, what: str) -> Path:
    """A missing challenge file names itself."""
    path = Path(path)
    if not path.exists():
        raise DataError(BadRow(str(path), 0, "-", f"{what} not found"))
    return path
