"""`facelab fuse-mesh` / `python -m jobs.fuse`: fuse a stored run with mediapipe's face mesh."""

from __future__ import annotations

from typing import Annotated

import typer

from facelab import config as paths
from jobs.common import Address, DataDir, Store, Task, command, emit


@command
def fuse_mesh(
    task: Task,
    data: DataDir,
    run: Annotated[str, typer.Option("--run", help="the run to fuse: 'promoted' or a run id")] = "promoted",
    store: Store = None,
    promote: Annotated[bool, typer.Option("--promote", help="also promote the fused run")] = False,
    address: Address = None,
) -> None:
    """Store a new run of TASK (emotion): RUN late-fused with a mesh expert (LightGBM on mediapipe's
    mesh geometry of the train split) by a head fitted on the val split; its submissions and
    Serve answers use the fused probabilities (facelab/fusion.py)."""
    from facelab.cluster import connect
    from facelab.fusion import fuse_mesh as fuse
    from facelab.store import ModelStore

    connect(address)
    emit(fuse(ModelStore(paths.store_uri(store)), task, run, data, promote=promote))


if __name__ == "__main__":
    typer.run(fuse_mesh)
