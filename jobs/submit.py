"""`facelab submit` / `python -m jobs.submit`: a Ray Data batch job that writes a submission."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab import config as paths
from jobs.common import Address, DataDir, SkipBad, Store, Task, command, emit, path_option


@command
def submit(
    task: Task,
    data: DataDir,
    out: Annotated[Path, path_option("--out", help="submission file or folder to write")],
    store: Store = None,
    run: Annotated[Optional[str], typer.Option("--run", help="a run id instead of the promoted one")] = None,
    actors: Annotated[Optional[int], typer.Option("--actors", help="predictor actors (one model each)")] = None,
    skip_bad: SkipBad = False,
    address: Address = None,
) -> None:
    """Predict TASK's test split with the promoted model and write the challenge's submission."""
    from facelab.cluster import connect
    from facelab.predict import submit as write_submission

    connect(address)
    emit(write_submission(task, data, out, paths.store_uri(store), run_id=run, skip_bad=skip_bad, actors=actors))


if __name__ == "__main__":
    typer.run(submit)
