"""`facelab tune` / `python -m jobs.tune`: a Ray Tune sweep over the task's search space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab import config as paths
from facelab.cluster import connect
from facelab.errors import FacelabError
from jobs.common import Address, SkipBad, Store, command, emit, load_config
from tuning.runner import resume as resume_sweep
from tuning.runner import sweep


@command
def tune(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="task name, e.g. sentiment")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="the task's data folder (challenge layout)")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="number of trials")] = 20,
    store: Store = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="promote the refitted best run")] = True,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="trials at once (default: all CPUs)")] = None,
    skip_bad: SkipBad = False,
    budget_minutes: Annotated[Optional[float], typer.Option(
        "--budget-minutes", min=0.1, help="wall-time budget of the whole sweep")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", help="continue an interrupted sweep: its folder (printed as 'sweep')")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="YAML/JSON of config values every trial uses, overriding the search space")] = None,
    address: Address = None,
) -> None:
    """Search TASK's space with Optuna on Ray Tune, store and promote the best (refitted, or for
    per-epoch tasks the best trial's own checkpoint); --resume continues an interrupted sweep."""
    if resume is None and (task is None or data is None):
        raise FacelabError("give --task and --data (or --resume SWEEP_FOLDER)")
    connect(address)
    if resume is not None:
        emit(resume_sweep(resume, paths.store_uri(store), promote=promote))
        return
    emit(sweep(task, data, paths.store_uri(store), samples=samples, promote=promote, skip_bad=skip_bad,
               max_concurrent=max_concurrent, budget_minutes=budget_minutes, fixed=load_config(config)))


if __name__ == "__main__":
    typer.run(tune)
