"""`facelab promote` / `python -m jobs.promote`: mark one stored run the winner of its task."""

from __future__ import annotations

from typing import Annotated

import typer

from facelab import config as paths
from facelab.errors import FacelabError
from jobs.common import Store, Task, command, emit


# A Serve application resolves each task's promoted run when it is built, so every replica serves the
# same run; a promotion reaches it only through a new deployment.
ROLLOUT = ("a running Serve application keeps the run it was deployed with: roll this one out with `facelab serve` "
           "(local) or `serve deploy serve/config.yaml` (cluster; Serve replaces the replicas one by one); "
           "`GET /tasks` shows the run id of every replica")


@command
def promote(
    task: Task,
    run: Annotated[str, typer.Option("--run", help="the run id to promote (see `facelab runs`)")],
    store: Store = None,
) -> None:
    """Promote RUN: serving and submissions of TASK load it from now on."""
    from facelab.store import ModelStore

    record = ModelStore(paths.store_uri(store)).promote(task, run)
    emit({"task": task, "promoted": run, "previous": record["previous"], "rollout": ROLLOUT})


@command
def runs(task: Task, store: Store = None) -> None:
    """List TASK's stored runs with their metrics, and which one is promoted. A run whose manifest
    is torn, edited or missing is listed under "unreadable" (one line each); the others still show."""
    from facelab.store import ModelStore

    model_store = ModelStore(paths.store_uri(store))
    unreadable = []
    try:
        winner = model_store.promoted(task)
    except FacelabError as exc:
        winner = None
        if "no promoted model" not in str(exc):
            unreadable.append(str(exc))
    manifests, problems = model_store.scan(task)
    emit({"task": task, "promoted": winner, "runs": [
        {"run_id": m["run_id"], "created": m.get("created"), "metrics": m.get("metrics"), "model": (m.get("config") or {}).get("model")}
        for m in manifests], "unreadable": unreadable + problems})


if __name__ == "__main__":
    typer.run(promote)
