"""Batch prediction and submissions: a Ray Data job over the test split with an actor pool."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.atomic import replacing
from facelab.config import absolute
from facelab.errors import BadRow, DataError, FacelabError
from facelab.formats import write_bad_rows
from facelab.formats.base import FILE, ROW
from facelab.store import ModelStore
from facelab.tasks import Task, get_task

# how long a batch job's predictor actors may take to start (an autoscaler adding nodes included)
ACTOR_START_S = 900


class BadRowSink:
    """Collects the rows a guarded predictor could not predict (a Ray actor, so any node reaches it)."""

    def __init__(self):
        self.rows: list[BadRow] = []

    def add(self, rows: list[BadRow]) -> None:
        self.rows.extend(rows)

    def all(self) -> list[BadRow]:
        """Each row once: a batch that Ray ran again (its actor lost with a node) reports its rows again."""
        return sorted(set(self.rows), key=lambda b: (b.file, b.row))


class GuardedPredictor:
    """A task's batch predictor that loses one row, never a batch: when a batch fails, its rows go
    through one at a time and each row that fails is reported to `sink` with its file, line and
    the error (the other rows' predictions go on)."""

    def __init__(self, predictor_class, model_dir: str, sink):
        self.predictor = predictor_class(model_dir)
        self.sink = sink

    def __call__(self, batch: dict) -> dict:
        try:
            return self.predictor(batch)
        except Exception:  # noqa: BLE001 - find the row(s) that fail
            pass
        outputs, bad = [], []
        rows = len(next(iter(batch.values())))
        for i in range(rows):
            try:
                outputs.append(self.predictor({key: value[i:i + 1] for key, value in batch.items()}))
            except Exception as exc:  # noqa: BLE001 - that row's problem, reported with it
                bad.append(BadRow(str(batch[FILE][i]) if FILE in batch else "-", int(batch[ROW][i]) if ROW in batch else i + 1,
                                  "-", f"prediction failed ({type(exc).__name__}: {' '.join(str(exc).split())})"))
        import ray

        ray.get(self.sink.add.remote(bad))
        if not outputs:
            return {}
        return {key: np.concatenate([np.asarray(out[key]) for out in outputs]) for key in outputs[0]}


def predict_dataset(task: Task, model_dir: Path, dataset, *, actors: int | None = None, batch_size: int = 256,
                    sink=None) -> pd.DataFrame:
    """Run the task's batch predictor over a Dataset with a pool of actors (one model each);
    rows come back in their input order (by `_row`). With `sink` (a BadRowSink actor), a row the
    predictor fails on is left out and reported there instead of failing the job."""
    import ray

    # no more actors than the CPUs free now: the pool waits for all of its actors to start (below)
    wanted = actors or cluster_cpus()
    actors = min(wanted, free_cpus(wanted))
    gpus = _gpus_for(task)
    if gpus:  # one GPU per actor: no more actors than GPUs
        actors = min(actors, gpus)
    table = _rows_in_the_driver(dataset)
    # heavy rows (a crowd is 101 face encodings): the task's small batches; other rows: a batch per
    # actor (at most `batch_size` rows each), so that every actor gets work
    batch_size = task.predict_batch_size or max(1, min(batch_size, -(-table.num_rows // actors)))
    dataset = ray.data.from_arrow([table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)] or [table])
    predictor, kwargs = task.predictor_class, {"model_dir": str(model_dir)}
    if sink is not None:
        predictor, kwargs = GuardedPredictor, {"predictor_class": task.predictor_class, "sink": sink, **kwargs}
    predicted = dataset.map_batches(
        predictor,
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        num_gpus=1 if gpus else None,
        scheduling_strategy="SPREAD",  # one model copy per node before a second on any: every node works
    )
    # the batches go out once every actor has started, not to the first ones up: otherwise an actor on
    # a node slower to start one (a fresh node, a busy one) finds every batch taken, and the job runs
    # on fewer nodes than it was spread over (seen: tests/cluster/test_node_loss.py)
    predicted.context.wait_for_min_actors_s = ACTOR_START_S
    try:
        frame = predicted.to_pandas()
    except ray.exceptions.GetTimeoutError as exc:
        raise FacelabError(f"{task.name}: {actors} predictor actors did not start within {ACTOR_START_S} s "
                           f"(cluster: {ray.cluster_resources()}, free: {ray.available_resources()}); "
                           f"ask for fewer with --actors") from exc
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


def _rows_in_the_driver(dataset):
    """The rows to predict, as one Arrow table in the driver, before the actors start. Blocks that
    Ray Data tasks make live on the node that ran them: a lost node's must be rebuilt by their tasks,
    which then wait for a CPU the predictor actors hold, and the job hangs (tests/cluster/
    test_node_loss.py). `from_arrow` puts the driver's blocks in its own node's store, and the rows
    are paths, embeddings and labels, not decoded images."""
    import pyarrow as pa
    import ray

    tables = ray.get(dataset.to_arrow_refs())
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


# how long `free_cpus` waits for CPUs that a finished stage's tasks are still giving back
SETTLE_S = 2.0


def free_cpus(wanted: int | None = None) -> int:
    """The whole CPUs no task or actor holds now, anywhere in the cluster (at least 1). With
    `wanted`, wait up to SETTLE_S for that many: a Ray Data stage that just returned its rows gives
    its tasks' CPUs back a moment later (seen: 1.5 of 2 CPUs free right after a submission's read
    stage, 2.0 a quarter of a second later; the job then ran one predictor actor, not two)."""
    import ray

    deadline = time.monotonic() + SETTLE_S
    while True:
        free = int(ray.available_resources().get("CPU", 0))
        if wanted is None or free >= wanted or time.monotonic() > deadline:
            return max(1, free)
        time.sleep(0.05)


def cluster_cpus() -> int:
    """The cluster's CPUs (every node's, not the driver's `os.cpu_count()`): one predictor actor each."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _gpus_for(task: Task) -> int:
    """GPUs for the predictor actors: the cluster's, for tasks whose models run on one."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0)) if task.predict_on_gpu else 0


def submit(task_name: str, data_dir: Path, out: Path, store_uri: str, *, run_id: str | None = None,
           skip_bad: bool = False, actors: int | None = None) -> dict:
    """`facelab submit`: the promoted (or given) run predicts the test split; the submission is
    written in the challenge layout, and rejected rows go to `<out>.bad_rows.csv`. A row is
    rejected when the reader finds it malformed or the predictor fails on it; without `skip_bad`
    the first one stops the job (after the rows were read and predicted, so every one is named).
    A row the task answered with its documented fallback (`Task.fallback_rows`: verify's pair
    or crowd's missing image with no face found) stays in the submission and is named in the side file too.
    The submission and the side file are written to temporary names and renamed: a killed job
    leaves the old files or the new ones, and a rerun starts clean."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = get_task(task_name)
    data_dir, out = absolute(data_dir), absolute(out)  # the predictor actors run in another working directory
    run = ModelStore(store_uri).load(task.name, run_id, check_config=task.config)
    read = task.format.read(data_dir, task.submit_split, skip_bad=skip_bad)
    # on the driver's node, which the job cannot outlive anyway: a worker node lost mid-job would
    # take the bad rows it collected with it
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    sink = ray.remote(num_cpus=0, scheduling_strategy=here)(BadRowSink).remote()
    started = time.perf_counter()
    predictions = predict_dataset(task, run.model_dir, read.dataset, actors=actors, sink=sink)
    seconds = time.perf_counter() - started
    failed = ray.get(sink.all.remote())
    ray.kill(sink)
    if failed and not skip_bad:
        raise DataError(failed[0], failed)
    fallbacks = task.fallback_rows(predictions)  # answered by the documented fallback: kept, and named
    bad = sorted(read.bad + failed + fallbacks, key=lambda b: (b.file, b.row))
    bad_path = Path(f"{out}.bad_rows.csv")
    with replacing(out) as tmp:
        written = task.format.write_submission(task.predictions_frame(predictions), tmp, data=data_dir,
                                               complete=not (read.bad or failed))
        written = out / written.relative_to(tmp) if written != tmp else out
    bad_file = write_bad_rows(bad, bad_path)
    if bad_file is None:
        bad_path.unlink(missing_ok=True)  # a side file of an earlier run would name rows this one kept
    return {"submission": str(written), "run_id": run.run_id, "rows": len(predictions),
            "bad_rows": len(read.bad) + len(failed), "fallback_rows": len(fallbacks),
            "bad_rows_file": str(bad_file) if bad_file else None,
            "seconds": round(seconds, 2), "rows_per_second": round(len(predictions) / seconds, 3) if seconds else None}
