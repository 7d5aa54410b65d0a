"""`facelab score` / `python -m jobs.score`: score a submission as the challenge does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.tasks import get_task
from jobs.common import Task, command, emit, path_option


@command
def score(
    task: Task,
    submission: Annotated[Path, path_option("--submission", help="the submission file or folder")],
    truth: Annotated[Path, path_option("--truth", help="the labelled file/folder in the challenge's own layout")],
    plots: Annotated[Optional[Path], path_option("--plots", help="also save plots (e.g. confusion matrix) here")] = None,
) -> None:
    """Print one JSON object of the challenge's metrics for SUBMISSION against TRUTH."""
    fmt = get_task(task).format
    options = {}
    if task == "synth":  # the gender balance of samples, by the promoted age-gender model when there is one
        from jobs.synth import gender_head

        options["gender"] = gender_head(None)
    result = {"task": task, **fmt.score(submission, truth, **options)}
    if plots:
        result["plots"] = [str(p) for p in fmt.plots(submission, truth, plots, **options)]
    emit(result)


if __name__ == "__main__":
    typer.run(score)
