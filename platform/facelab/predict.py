"""Batch prediction and submissions: a Ray Data job over the test split with an actor pool."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.config import absolute
from facelab.formats import write_bad_rows
from facelab.store import ModelStore
from facelab.tasks import Task, get_task


def predict_dataset(task: Task, model_dir: Path, dataset, *, actors: int | None = None, batch_size: int = 256) -> pd.DataFrame:
    """Run the task's batch predictor over a Dataset with a pool of actors (one model each);
    rows come back in their input order (by `_row`)."""
    import ray

    actors = actors or max(1, min(4, (os.cpu_count() or 2) // 2))
    gpus = _gpus_for(task)
    if gpus:  # one GPU per actor: no more actors than GPUs
        actors = min(actors, gpus)
    rows_per_call = task.predict_batch_size
    if rows_per_call:
        # heavy rows (a crowd is 101 face encodings): small batches in blocks of their own, so every
        # actor gets work; materialized first, so the actors may hold every CPU without starving it
        batch_size = rows_per_call
        dataset = dataset.repartition(target_num_rows_per_block=rows_per_call).materialize()
    predicted = dataset.map_batches(
        task.predictor_class,
        fn_constructor_kwargs={"model_dir": str(model_dir)},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        num_gpus=1 if gpus else None,
    )
    frame = predicted.to_pandas()
    return frame.sort_values("_row").reset_index(drop=True) if "_row" in frame else frame


def predict_rows(predictor, rows: list[dict]) -> list[dict]:
    """Rows (dicts of one value per column) through a batch predictor as one batch; one output
    dict per row. Serve's deployments batch concurrent requests' rows this way."""
    batch = {key: _stack([row[key] for row in rows]) for key in rows[0]}
    out = predictor(batch)
    return [{key: value[i] for key, value in out.items()} for i in range(len(rows))]


def _stack(values: list) -> np.ndarray:
    """Rows' values as one batch column; images of different sizes stay an object array."""
    try:
        return np.stack(values)
    except ValueError:
        column = np.empty(len(values), dtype=object)
        column[:] = values
        return column


def _gpus_for(task: Task) -> int:
    """GPUs for the predictor actors: the cluster's, for tasks whose models run on one."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0)) if task.predict_on_gpu else 0


def submit(task_name: str, data_dir: Path, out: Path, store_uri: str, *, run_id: str | None = None,
           skip_bad: bool = False, actors: int | None = None) -> dict:
    """`facelab submit`: the promoted (or given) run predicts the test split; the submission is
    written in the challenge layout, and rejected rows go to `<out>.bad_rows.csv`."""
    task = get_task(task_name)
    data_dir, out = absolute(data_dir), absolute(out)  # the predictor actors run in another working directory
    run = ModelStore(store_uri).load(task.name, run_id, check_config=task.config)
    read = task.format.read(data_dir, task.submit_split, skip_bad=skip_bad)
    started = time.perf_counter()
    predictions = predict_dataset(task, run.model_dir, read.dataset, actors=actors)
    seconds = time.perf_counter() - started
    written = task.format.write_submission(task.predictions_frame(predictions), out, data=data_dir)
    bad_file = write_bad_rows(read.bad, Path(f"{out}.bad_rows.csv"))
    return {"submission": str(written), "run_id": run.run_id, "rows": len(predictions), "bad_rows": len(read.bad),
            "bad_rows_file": str(bad_file) if bad_file else None,
            "seconds": round(seconds, 2), "rows_per_second": round(len(predictions) / seconds, 3) if seconds else None}
