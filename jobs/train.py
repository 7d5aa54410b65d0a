"""`facelab train` / `python -m jobs.train`: fit one config of a task and store the run."""

from __future__ import annotations

from typing import Annotated

import typer

from facelab import config as paths
from facelab.tasks import get_task
from jobs.common import Address, ConfigFile, DataDir, SkipBad, Store, Task, command, emit, load_config


@command
def train(
    task: Task,
    data: DataDir,
    config: ConfigFile = None,
    store: Store = None,
    promote: Annotated[bool, typer.Option("--promote", help="also promote the new run")] = False,
    skip_bad: SkipBad = False,
    address: Address = None,
) -> None:
    """Train TASK on the data folder with its default config (plus --config) and store the run."""
    from facelab.cluster import connect
    from facelab.train import train as fit

    overrides = load_config(config)
    source = str(config) if config else "config"
    get_task(task).check_keys(overrides, source=source)  # a bad key fails here, before Ray starts
    connect(address)
    run_id, metrics = fit(task, data, paths.store_uri(store), config=overrides, skip_bad=skip_bad, promote=promote,
                          config_source=source)
    emit({"task": task, "run_id": run_id, "promoted": promote, **metrics})


if __name__ == "__main__":
    typer.run(train)
