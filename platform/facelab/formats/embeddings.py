"""Vectors in challenge files: embedding text in CSV cells, embedding tables, `.npy` matrices.

Row checks raise FieldError (the caller adds file and row); whole-file problems raise a
DataError naming the file (and, for a row-aligned `.npy`, the CSV it must match).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import read_table


def parse_vector_text(text: str, field: str, dim: int | None = None) -> np.ndarray:
    """The text of a list of numbers (`"[0.1, 2, ...]"`), parsed as JSON (never eval)."""
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FieldError(field, f"not a list of numbers ({exc.__class__.__name__})") from None
    return check_vector(values, field, dim)


def check_vector(values, field: str, dim: int | None = None) -> np.ndarray:
    """A list or array of finite numbers of length `dim`, as float32."""
    if values is None:
        raise FieldError(field, "missing")
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        array = values
    else:
        if not isinstance(values, (list, tuple, np.ndarray)) or not all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            for v in values if v is not None
        ):
            raise FieldError(field, "not a list of numbers")
        if any(v is None for v in values):
            raise FieldError(field, "contains a missing (null) value")
        array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise FieldError(field, f"has shape {array.shape}, expected a flat list")
    if dim is not None and len(array) != dim:
        raise FieldError(field, f"has {len(array)} values, expected {dim}")
    if not np.isfinite(array).all():
        raise FieldError(field, "contains NaN or infinity")
    return array.astype(np.float32)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


# --- row-aligned .npy matrices ---------------------------------------------------------------

def load_matrix(path: Path, *, rows: int | None = None, rows_of: Path | None = None,
                dim: int | None = None) -> np.ndarray:
    """A 2-D numeric `.npy`, memory-mapped; its shape checked against a CSV and a dimension.

    `rows`/`rows_of`: the row count it must have and the CSV that has that many rows (named
    in the error). Only the header is read here; values are checked row by row later.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(BadRow(str(path), 0, "-", "file not found"))
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        raise DataError(BadRow(str(path), 0, "-", f"not a readable .npy array: {' '.join(str(exc).split())}")) from None
    if not isinstance(matrix, np.memmap) or matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise DataError(BadRow(str(path), 0, "-", f"expected a 2-D numeric array, found {matrix.dtype} "
                                                  f"with shape {matrix.shape}"))
    size = os.path.getsize(path)
    if size != matrix.offset + matrix.nbytes:  # a header that disagrees with the data (bytes lost or added)
        raise DataError(BadRow(str(path), 0, "-", f"holds {size} bytes but its header describes "
                                                  f"{matrix.offset + matrix.nbytes} ({matrix.dtype}, {matrix.shape})"))
    if rows is not None and matrix.shape[0] != rows:
        where = f" but {rows_of} has {rows} data rows" if rows_of else f", expected {rows}"
        raise DataError(BadRow(str(path), 0, "-", f"has {matrix.shape[0]} rows{where}; they must be row-aligned"))
    if dim is not None and matrix.shape[1] != dim:
        raise DataError(BadRow(str(path), 0, "-", f"has dimension {matrix.shape[1]}, expected {dim}"))
    return matrix


@functools.lru_cache(maxsize=16)
def _mapped(path: str, mtime_ns: int, size: int) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def mapped(path: Path | str) -> np.ndarray:
    """The memory map of a `.npy` already checked by `load_matrix`, cached per worker process."""
    stat = os.stat(path)
    return _mapped(str(path), stat.st_mtime_ns, stat.st_size)


def nonfinite_rows(matrix: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Indices of rows holding NaN or infinity, scanned in chunks (works on memory maps)."""
    bad = [np.flatnonzero(~np.isfinite(matrix[i:i + chunk]).all(axis=1)) + i
           for i in range(0, len(matrix), chunk)]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


# --- embedding tables keyed by a file name ---------------------------------------------------

def read_embedding_table(folder: Path, key: str, stem: str = "embeddings") -> tuple[pa.Table, Path]:
    """`<stem>.parquet` (`key`, `embedding` list<float>) or `<stem>.csv` (`key,embedding`, the
    embedding as the text of a list); the parquet file wins when both exist."""
    import pyarrow.parquet as pq

    parquet, text = Path(folder) / f"{stem}.parquet", Path(folder) / f"{stem}.csv"
    if parquet.is_file():
        try:
            table = pq.read_table(parquet)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(BadRow(str(parquet), 0, "-", f"not a readable parquet file: {exc}")) from exc
        for name in (key, "embedding"):
            if name not in table.column_names:
                raise DataError(BadRow(str(parquet), 0, name, f"missing column (found {table.column_names})"))
        if not pa.types.is_list(table.schema.field("embedding").type) and \
                not pa.types.is_large_list(table.schema.field("embedding").type):
            raise DataError(BadRow(str(parquet), 0, "embedding",
                                   f"expected a list of floats, found {table.schema.field('embedding').type}"))
        return table.select([key, "embedding"]).cast(
            pa.schema([(key, pa.string()), ("embedding", table.schema.field("embedding").type)])), parquet
    if text.is_file():
        return read_table(text, [key, "embedding"]).select([key, "embedding"]), text
    raise DataError(BadRow(str(parquet), 0, "-", f"no embeddings: neither {parquet.name} nor {text.name} found"))


def join_embeddings(table: pa.Table, folder: Path, key: str, stem: str = "embeddings") -> tuple[pa.Table, int, Path]:
    """Add an `embedding` column to `table` from the embedding table in `folder`, matched on `key`.

    Rows with no embedding get null (a row check reports it). Returns the table, the
    dimension (the most common length in the embedding file) and the embedding file's path.
    The join runs in Arrow in the driver (FairFace: ~100k x 512 floats, about 200 MB); the
    values are checked and parsed in parallel afterwards by the format's row check.
    """
    emb, path = read_embedding_table(folder, key, stem)
    keys = emb.column(key).combine_chunks()
    if pc.count_distinct(keys).as_py() != len(keys):
        seen: set = set()
        for i, name in enumerate(keys.to_pylist()):
            if name in seen:
                row = i + 2 if path.suffix == ".csv" else i + 1
                raise DataError(BadRow(str(path), row, key, f"'{name}' has more than one embedding"))
            seen.add(name)
    values = emb.column("embedding")
    if pa.types.is_string(values.type):  # the text of a list: count its items
        lengths = pc.add(pc.count_substring(values, ","), 1)
    else:
        lengths = pc.list_value_length(values)
    counts = pc.value_counts(lengths.drop_null()).to_pylist()
    dim = int(max(counts, key=lambda c: c["counts"])["values"]) if counts else 0
    index = pc.index_in(table.column(key), value_set=keys)
    return table.append_column("embedding", values.take(index)), dim, path
