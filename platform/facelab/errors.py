"""Errors that name the file, row and field of bad input."""

from __future__ import annotations

from dataclasses import asdict, dataclass


class FacelabError(Exception):
    """An error a user can act on; the CLI prints it as one line and exits non-zero."""


class RealDataMissing(FacelabError):
    """The real data a task needs is not under the data root: the demo and the tests skip the task
    (every other error fails it)."""


@dataclass(frozen=True)
class BadRow:
    """One rejected input row: where it is and why."""

    file: str
    row: int  # 1-based line number in the file (header is line 1) or 1-based item index; 0: the whole file
    field: str  # "-": no one field
    reason: str

    def __str__(self) -> str:
        where = [self.file] + ([f"row {self.row}"] if self.row else []) + ([f"field '{self.field}'"] if self.field != "-" else [])
        return ": ".join(where + [self.reason])

    def as_dict(self) -> dict:
        return asdict(self)


class DataError(FacelabError, ValueError):
    """Malformed input; carries the first bad row (and all of them when known)."""

    def __init__(self, bad: BadRow, all_bad: list[BadRow] | None = None):
        self.bad = bad
        self.all_bad = all_bad or [bad]
        more = len(self.all_bad) - 1
        suffix = f" (and {more} more bad rows; use --skip-bad to keep the good ones)" if more else ""
        super().__init__(str(bad) + suffix)

    def __reduce__(self):
        return type(self), (self.bad, self.all_bad)


class FieldError(ValueError):
    """Raised by a row parser: which field is wrong and why (file and row are added by the caller)."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def __reduce__(self):
        return type(self), (self.field, self.reason)
