"""Fit one config of a task and store the run (generic over the task registry)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from facelab.errors import FacelabError
from facelab.formats import Read, write_bad_rows
from facelab.store import ModelStore, fingerprint
from facelab.tasks import Task, get_task


def load_fit_data(task: Task, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
    data = Path(data)
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
    """Fit `config` on already-read data, store model + manifest; returns (run_id, metrics).
    `fit` replaces `task.fit` (e.g. a sweep promoting a trial's own checkpoint instead of refitting)."""
    with tempfile.TemporaryDirectory(prefix=f"facelab-{task.name}-") as tmp:
        model_dir = Path(tmp)
        metrics = (fit or task.fit)(config, data, model_dir)
        bad = [b for read in data.values() for b in read.bad]
        if bad:
            write_bad_rows(bad, model_dir / "bad_rows.csv")
        for name, path in (extra_files or {}).items():
            (model_dir / name).write_bytes(Path(path).read_bytes())
        run_id = store.save(task.name, model_dir, config=config, metrics=metrics,
                            data_fingerprint=fingerprint(data_dir),
                            extra={"data": str(Path(data_dir).resolve()), "bad_rows": len(bad), **(extra or {})})
    return run_id, metrics


def train(task_name: str, data_dir: Path, store_uri: str, *, config: dict | None = None, skip_bad: bool = False,
          promote: bool = False) -> tuple[str, dict]:
    """`facelab train`: the task's default config updated by `config`, fitted and stored."""
    task = get_task(task_name)
    full_config = {**task.default_config, **(config or {})}
    store = ModelStore(store_uri)
    run_id, metrics = fit_and_store(task, data_dir, load_fit_data(task, data_dir, skip_bad=skip_bad), full_config, store)
    if promote:
        store.promote(task.name, run_id)
    return run_id, metrics
