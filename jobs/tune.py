"""`facelab tune` / `python -m jobs.tune`: a Ray Tune sweep over the task's search space."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab import config as paths
from facelab.cluster import connect
from facelab.errors import FacelabError
from facelab.tasks import get_task
from jobs.common import (Address, SkipBad, Store, TaskName, command, emit, load_config, path_option, redirected_output,
                         store_location)
from tuning.runner import resume as resume_sweep
from tuning.runner import sweep


@command
def tune(
    task: Annotated[Optional[TaskName], typer.Option("--task", "-t", help="the task")] = None,
    data: Annotated[Optional[Path], path_option("--data", help="the task's data folder (challenge layout)")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="number of trials")] = 20,
    store: Store = None,
    promote: Annotated[bool, typer.Option("--promote/--no-promote", help="promote the refitted best run")] = True,
    max_concurrent: Annotated[Optional[int], typer.Option("--max-concurrent", help="trials at once (default: all CPUs)")] = None,
    skip_bad: SkipBad = False,
    budget_minutes: Annotated[Optional[float], typer.Option(
        "--budget-minutes", min=0.1, help="wall-time budget of the whole sweep")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", callback=store_location, help="continue an interrupted sweep: its folder (printed as 'sweep')")] = None,
    config: Annotated[Optional[Path], path_option(
        "--config", help="YAML/JSON of config values every trial uses, overriding the search space")] = None,
    max_failures: Annotated[int, typer.Option(
        "--max-failures", min=0, help="retries of a failing trial (each from its latest checkpoint) before it "
                                      "is reported as failed")] = 2,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="with --resume: give the trials that failed (after their retries) another round; "
                               "by default they stay failed, with their reason in the result table")] = False,
    early_stop: Annotated[Optional[bool], typer.Option(
        "--early-stop/--no-early-stop", help="ASHA stops weak trials at the rungs the task's search space names "
                                             "(tasks that report every epoch); --no-early-stop runs every trial to "
                                             "its end [default: early stop]")] = None,
    address: Address = None,
) -> None:
    """Search TASK's space with Optuna on Ray Tune, store and promote the best (refitted, or for
    per-epoch tasks the best trial's own checkpoint); --resume continues an interrupted sweep.

    Stdout carries only the JSON result (`facelab tune ... | jq .run_id`); Tune's status tables,
    worker logs and everything else Ray prints go to stderr."""
    if resume is None and (task is None or data is None):
        raise FacelabError("give --task and --data (or --resume SWEEP_FOLDER)")
    if retry_failed and resume is None:
        raise FacelabError("--retry-failed goes with --resume SWEEP_FOLDER")
    if early_stop is not None and resume is not None:
        raise FacelabError("--early-stop/--no-early-stop is for a new sweep: a resumed sweep keeps its scheduler")
    fixed = load_config(config)
    if task is not None:  # a bad key fails here, before Ray starts
        get_task(task).check_keys(fixed, source=str(config) if config else "config")
    with redirected_output(sys.stderr) as stdout:
        connect(address)
        if resume is not None:
            result = resume_sweep(resume, paths.store_uri(store), promote=promote, retry_failed=retry_failed)
        else:
            result = sweep(task, data, paths.store_uri(store), samples=samples, promote=promote, skip_bad=skip_bad,
                           max_concurrent=max_concurrent, budget_minutes=budget_minutes, fixed=fixed,
                           max_failures=max_failures, early_stop=early_stop is not False)
        emit(result, stdout)


if __name__ == "__main__":
    typer.run(tune)
