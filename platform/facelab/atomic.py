"""Outputs written whole: to a temporary name beside the target, then renamed over it, so a reader,
or a rerun after a killed job, finds the old file or the new one and never a torn one."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A hidden name in `path`'s folder that keeps its suffix (writers may look at it)."""
    path = Path(path)
    return path.parent / f".{path.stem}.tmp-{uuid.uuid4().hex[:12]}{path.suffix}"


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, synced, then renamed."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write (a file, or a folder); on success it replaces `path` (a file
    by one rename; a folder's entries one by one, each folder entry by moving the old one aside
    first, other entries of `path` left alone), on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if tmp.is_dir():
            path.mkdir(exist_ok=True)
            for entry in tmp.iterdir():  # entry by entry: whatever else is in the folder stays
                _replace_entry(entry, path / entry.name)
        elif tmp.exists():
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _replace_entry(new: Path, target: Path) -> None:
    if new.is_dir() and target.is_dir():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
