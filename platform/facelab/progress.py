"""Progress bars for long loops on the driver (Ray Data and Tune show their own)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """A tqdm bar on stderr when it is a terminal; silent in logs, CI and tests."""
    return tqdm(items, desc=desc, total=total, disable=None, leave=False, unit="item")
