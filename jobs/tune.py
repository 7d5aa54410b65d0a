"""`facelab tune` / `python -m jobs.tune`: a Ray Tune sweep over the task's search space."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from facelab import config as paths
from facelab.cluster import connect
from jobs.common import Address, DataDir, SkipBad, Store, Task, command, emit
from tuning.runner import sweep


@command
def tune(
    task: Task,
    data: DataDir,
    samples: Annotated[int, typer.Option("--samples", min=1, help="number of trials")] = 20,
    store: Store = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="promote the refitted best run")] = True,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="trials at once (default: all CPUs)")] = None,
    skip_bad: SkipBad = False,
    address: Address = None,
) -> None:
    """Search TASK's space with Optuna on Ray Tune, refit the best config, store and promote it."""
    connect(address)
    emit(sweep(task, data, paths.store_uri(store), samples=samples, promote=promote, skip_bad=skip_bad,
               max_concurrent=max_concurrent))


if __name__ == "__main__":
    typer.run(tune)
