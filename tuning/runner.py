"""The Tune runner, generic over tasks: Optuna search over the task's space, trials in parallel
on the cluster's CPUs, then the winner refitted, stored with its sweep's results, and promoted."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from facelab import plots
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.train import fit_and_store, load_fit_data
from tuning import spaces


def _trainable(config: dict, task_name: str, trial_data) -> None:
    from ray import tune

    from facelab.tasks import get_task as lookup

    tune.report(lookup(task_name).evaluate_config(config, trial_data))


def sweep(task_name: str, data_dir: Path, store_uri: str, *, samples: int = 20, promote: bool = True,
          skip_bad: bool = False, max_concurrent: int | None = None, seed: int = 0) -> dict:
    """`facelab tune`: returns the sweep summary (best config, its trial metrics, the stored run)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    task = get_task(task_name)
    space = spaces.for_task(task.name)
    store = ModelStore(store_uri)
    data = load_fit_data(task, data_dir, skip_bad=skip_bad)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, task_name=task.name, trial_data=task.trial_data(data)), {"cpu": 1})
    searcher = OptunaSearch(space=space.space, metric=task.metric, mode=task.mode,
                            points_to_evaluate=list(getattr(space, "seed_points", [])), seed=seed)
    name = f"{task.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    storage = f"{store.uri.rstrip('/')}/{task.name}/sweeps" if "://" in store.uri else str(Path(store.root) / task.name / "sweeps")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples, max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result(task.metric, task.mode)
    frame = results.get_dataframe()
    with tempfile.TemporaryDirectory() as tmp:
        csv, png = Path(tmp) / "tune_results.csv", Path(tmp) / "tune_results.png"
        frame.to_csv(csv, index=False)
        plots.tune_results_png(frame.dropna(subset=[task.metric]), task.metric, png)
        run_id, fit_metrics = fit_and_store(
            task, data_dir, data, best.config, store,
            extra_files={"tune_results.csv": csv, "tune_results.png": png},
            extra={"sweep": {"name": name, "storage": storage, "trials": len(frame), "best_trial": best.metrics_dataframe
                             .iloc[-1][[task.metric]].to_dict() if best.metrics_dataframe is not None else {}}})
    if promote:
        store.promote(task.name, run_id)
    return {"task": task.name, "run_id": run_id, "promoted": promote, "trials": len(frame),
            "best_config": best.config, f"trial_{task.metric}": float(best.metrics[task.metric]), **fit_metrics}
