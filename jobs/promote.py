"""`facelab promote` / `python -m jobs.promote`: mark one stored run the winner of its task."""

from __future__ import annotations

from typing import Annotated

import typer

from facelab import config as paths
from facelab.errors import FacelabError
from jobs.common import Store, Task, command, emit


@command
def promote(
    task: Task,
    run: Annotated[str, typer.Option("--run", help="the run id to promote (see `facelab runs`)")],
    store: Store = None,
) -> None:
    """Promote RUN: serving and submissions of TASK load it from now on."""
    from facelab.store import ModelStore

    ModelStore(paths.store_uri(store)).promote(task, run)
    emit({"task": task, "promoted": run})


@command
def runs(task: Task, store: Store = None) -> None:
    """List TASK's stored runs with their metrics, and which one is promoted."""
    from facelab.store import ModelStore

    model_store = ModelStore(paths.store_uri(store))
    try:
        winner = model_store.promoted(task)
    except FacelabError:
        winner = None
    emit({"task": task, "promoted": winner, "runs": [
        {"run_id": m["run_id"], "created": m["created"], "metrics": m["metrics"], "model": m["config"].get("model")}
        for m in model_store.runs(task)]})


if __name__ == "__main__":
    typer.run(promote)
