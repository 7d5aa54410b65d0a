"""Fit one config of a task and store the run (generic over the task registry)."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

from facelab import backbone
from facelab.config import absolute
from facelab.errors import FacelabError
from facelab.formats import Read, write_bad_rows
from facelab.store import ModelStore, fingerprint
from facelab.tasks import Task, get_task


def load_fit_data(task: Task, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
    data = absolute(data)
    if not data.is_dir():
        raise FacelabError(f"{data}: data folder not found")
    return task.read_for_fit(data, skip_bad=skip_bad)


def fit_and_store(
    task: Task,
    data_dir: Path,
    data: dict[str, Read],
    config: dict,
    store: ModelStore,
    *,
    extra_files: dict[str, Path] | None = None,
    extra: dict | None = None,
    fit: Callable[[dict, dict, Path], dict] | None = None,
) -> tuple[str, dict]:
    """Fit `config` on already-read data, report on it, store model + manifest; returns (run_id,
    metrics). `fit` replaces `task.fit` (e.g. a sweep adopting a trial's own checkpoint instead of
    refitting). A config that names a `backbone` starts from it (facelab.backbone.pin), and the
    stored run records that backbone's run id. The task's `report_split` is predicted once by the fitted model and handed to its
    `report` hook (metrics, slices, plots)."""
    full = task.config(config, source=f"task '{task.name}' fit")  # a trial's config may leave out unused defaults
    full, start = backbone.pin(task.name, full, store)
    if full.get("backbone"):  # the run records the backbone run it started from
        config, extra = {**config, "backbone": full["backbone"]}, {**(extra or {}), "backbone": full["backbone"]}
    if fit is None:
        fit = functools.partial(task.fit, start=start) if start is not None else task.fit
    with tempfile.TemporaryDirectory(prefix=f"facelab-{task.name}-") as tmp:
        model_dir = Path(tmp)
        metrics = fit(full, data, model_dir)
        metrics = task.report(full, data, model_dir, metrics, report_predictions(task, model_dir, data))
        bad = [b for read in data.values() for b in read.bad]
        if bad:
            write_bad_rows(bad, model_dir / "bad_rows.csv")
        for name, path in (extra_files or {}).items():
            (model_dir / name).write_bytes(Path(path).read_bytes())
        run_id = store.save(task.name, model_dir, config=config, metrics=metrics,
                            data_fingerprint=fingerprint(data_dir),
                            extra={"data": str(Path(data_dir).resolve()), "bad_rows": len(bad), **(extra or {})})
    return run_id, metrics


def report_predictions(task: Task, model_dir: Path, data: dict[str, Read]):
    """The task's report split predicted by the model in `model_dir`, joined with the split's rows
    (by `_row`; the predictor's columns suffixed `_pred` where names clash), or None."""
    if task.report_split is None:
        return None
    from facelab.formats.base import ROW
    from facelab.predict import predict_dataset

    dataset = data[task.report_split].dataset
    predicted = predict_dataset(task, Path(model_dir), dataset)
    truth = dataset.to_pandas()
    return truth.merge(predicted, on=ROW, how="left", suffixes=("", "_pred"))


def train(task_name: str, data_dir: Path, store_uri: str, *, config: dict | None = None, skip_bad: bool = False,
          promote: bool = False, config_source: str = "config") -> tuple[str, dict]:
    """`facelab train`: the task's default config updated by `config`, fitted and stored. An unknown
    or ill-typed key is a FacelabError naming it and `config_source` (e.g. the --config file)."""
    task = get_task(task_name)
    full_config = task.config(config, source=config_source)
    data_dir = absolute(data_dir)
    store = ModelStore(store_uri)
    run_id, metrics = fit_and_store(task, data_dir, load_fit_data(task, data_dir, skip_bad=skip_bad), full_config, store)
    if promote:
        store.promote(task.name, run_id)
    return run_id, metrics
