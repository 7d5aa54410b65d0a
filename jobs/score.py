"""`facelab score` / `python -m jobs.score`: score a submission as the challenge does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facelab.formats import get_format
from jobs.common import Task, command, emit


@command
def score(
    task: Task,
    submission: Annotated[Path, typer.Option("--submission", help="the submission file or folder")],
    truth: Annotated[Path, typer.Option("--truth", help="the labelled file/folder in the challenge's own layout")],
) -> None:
    """Print one JSON object of the challenge's metrics for SUBMISSION against TRUTH."""
    emit({"task": task, **get_format(task).score(submission, truth)})


if __name__ == "__main__":
    typer.run(score)
