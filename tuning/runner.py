"""The Tune runner, generic over tasks: Optuna search over the task's space, trials in parallel
on the cluster's CPUs, then the winner refitted, stored with its sweep's results, and promoted."""

from __future__ import annotations

import datetime as dt
import functools
import json
import tempfile
from pathlib import Path

from facelab import plots
from facelab.errors import FacelabError
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.train import fit_and_store, load_fit_data
from tuning import spaces


def _trainable(config: dict, task_name: str, trial_data) -> None:
    from ray import tune

    from facelab.tasks import get_task as lookup

    tune.report(lookup(task_name).evaluate_config(config, trial_data))


SWEEP_FILE = "facelab_sweep.json"  # in the experiment folder: what `resume` needs to rebuild the sweep


def _trainable_for(task, data, trials: int | None = None):
    """The task's own per-epoch trainable when it has one (torch and YOLO tasks), else one
    evaluate_config per trial. Torch trials are sized for `trials` at once."""
    from ray import tune

    if hasattr(task, "tune_trainable"):
        return task.tune_trainable(data, trials)
    return tune.with_resources(
        tune.with_parameters(_trainable, task_name=task.name, trial_data=task.trial_data(data)), {"cpu": 1})


class _SpaceTrial:
    """The Optuna trial a space sees: suggestions of the `fixed` names return the fixed values,
    and the names it suggested are recorded with their values (so the task's defaults fill only the rest)."""

    def __init__(self, trial, fixed: dict):
        self._trial, self._fixed, self.suggested = trial, fixed, {}

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param, *args, **kwargs):
            value = self._fixed[param] if param in self._fixed else attr(param, *args, **kwargs)
            self.suggested[param] = value
            return value
        return suggest


def _no_unused_defaults(suggested: dict) -> set[str]:
    return set()


def _full_space(space_fn, unused_defaults, defaults: dict, fixed: dict, trial) -> dict:
    """A trial's config: what the space suggests, its constants, the `fixed` values, and the
    task's default config for everything else (Optuna's returned constants override suggestions,
    so defaults must leave the suggested names alone). A space's `unused_defaults(suggested)`
    names the defaults its choices make meaningless (the seed SVC's kernel on a LightGBM trial)."""
    spaced = _SpaceTrial(trial, fixed)
    constants = space_fn(spaced) or {}
    unused = unused_defaults(spaced.suggested)
    rest = {k: v for k, v in defaults.items() if k not in spaced.suggested and k not in unused}
    return {**rest, **constants, **fixed}


def _space_with(space, defaults: dict, fixed: dict | None):
    """The task's define-by-run space (its module's `space`) completed (picklable: Tune saves the searcher)."""
    return functools.partial(_full_space, space.space, getattr(space, "unused_defaults", _no_unused_defaults),
                             dict(defaults), dict(fixed or {}))


def sweep(task_name: str, data_dir: Path, store_uri: str, *, samples: int = 20, promote: bool = True,
          skip_bad: bool = False, max_concurrent: int | None = None, seed: int = 0,
          budget_minutes: float | None = None, fixed: dict | None = None) -> dict:
    """`facelab tune`: returns the sweep summary (best config, its trial metrics, the stored run).
    `budget_minutes` caps the whole sweep's wall time (Tune stops the trials still running);
    `fixed` config values hold in every trial, whatever the search space says (e.g. a CI-sized
    model and epoch count)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    task = get_task(task_name)
    space = spaces.for_task(task.name)
    store = ModelStore(store_uri)
    data = load_fit_data(task, data_dir, skip_bad=skip_bad)
    if max_concurrent is None and hasattr(task, "tune_concurrency"):  # trials whose trainers hold the resources
        max_concurrent = task.tune_concurrency()
    trainable = _trainable_for(task, data, max_concurrent)
    searcher = OptunaSearch(space=_space_with(space, task.default_config, fixed), metric=task.metric, mode=task.mode,
                            points_to_evaluate=list(getattr(space, "seed_points", [])), seed=seed)
    # tasks that report every epoch stop poor trials early
    scheduler = ASHAScheduler(metric=task.metric, mode=task.mode, **space.asha) if hasattr(space, "asha") else None
    name = f"{task.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    storage = f"{store.uri.rstrip('/')}/{task.name}/sweeps" if "://" in store.uri else str(Path(store.root) / task.name / "sweeps")
    run_config = (task.tune_run_config(name, storage, verbose=1) if hasattr(task, "tune_run_config")
                  else tune.RunConfig(name=name, storage_path=storage, verbose=1))
    _write_sweep_file(f"{storage}/{name}", {"task": task.name, "data": str(Path(data_dir).resolve()),
                                            "skip_bad": skip_bad, "samples": samples, "budget_minutes": budget_minutes,
                                            "max_concurrent": max_concurrent})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples, max_concurrent_trials=max_concurrent,
                                    scheduler=scheduler, time_budget_s=budget_minutes * 60 if budget_minutes else None),
        run_config=run_config,
    )
    results = _complete(tuner.fit(), f"{storage}/{name}", samples, budget_minutes, task.metric)
    return _store_best(task, data_dir, data, results, store, name, storage, promote)


def _complete(results, path: str, samples: int, budget_minutes: float | None, metric: str):
    """The results of a sweep that ran to its end; an interrupted one (Ctrl+C) is an error that
    says how to resume it, and nothing is stored or promoted from it. Whether it ended is read
    from the experiment state Tune saved, which is what `resume` continues from."""
    from ray.tune import ExperimentAnalysis

    if len(results) and results.num_errors == len(results):
        raise FacelabError(f"every trial of the sweep failed ({path}); the first: {results.errors[0]}")
    trials = ExperimentAnalysis(path).trials
    finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    if finished < len(trials) or (len(trials) < samples and not budget_minutes):
        raise FacelabError(f"sweep interrupted ({finished} of {samples} trials finished); "
                           f"continue it with `facelab tune --resume {path}`")
    require_reported(results.get_dataframe(), metric, path, budget_minutes)
    return results


def require_reported(frame, metric: str, path: str, budget_minutes: float | None) -> None:
    """A sweep whose budget ran out before any trial reported its metric has no best trial:
    say so, and how to go on, rather than let Tune fail on the empty result."""
    if metric in frame and frame[metric].notna().any():
        return
    within = f" within the {budget_minutes:g}-minute budget" if budget_minutes else ""
    raise FacelabError(f"no trial of the sweep reported '{metric}'{within}, so there is nothing to store ({path}); "
                       f"give it a larger --budget-minutes, or continue it with `facelab tune --resume {path}`")


def resume(sweep_path: str, store_uri: str, *, promote: bool = True) -> dict:
    """`facelab tune --resume PATH`: continue an interrupted sweep where it stopped (Tuner.restore:
    unfinished and errored trials go on from their latest checkpoint), then store and promote its
    best as `sweep` does."""
    from ray import tune

    sweep_path = sweep_path.rstrip("/")
    saved = _read_sweep_file(sweep_path)
    task = get_task(saved["task"])
    data_dir = Path(saved["data"])
    data = load_fit_data(task, data_dir, skip_bad=bool(saved.get("skip_bad")))
    if not tune.Tuner.can_restore(sweep_path):
        raise FacelabError(f"{sweep_path}: no Tune experiment state to resume")
    tuner = tune.Tuner.restore(sweep_path, trainable=_trainable_for(task, data, saved.get("max_concurrent")),
                               resume_unfinished=True,
                               resume_errored=True)
    results = _complete(tuner.fit(), sweep_path, int(saved.get("samples", 0)), saved.get("budget_minutes"), task.metric)
    storage, name = sweep_path.rsplit("/", 1)
    return _store_best(task, data_dir, data, results, ModelStore(store_uri), name, storage, promote)


def _store_best(task, data_dir: Path, data, results, store: ModelStore, name: str, storage: str, promote: bool) -> dict:
    """The sweep's winner stored with the sweep's results (and promoted): refitted from its config,
    or, for tasks that train per epoch in their trials, the best trial's best checkpoint itself."""
    per_epoch = hasattr(task, "fit_from_trial")
    best = results.get_best_result(task.metric, task.mode, scope="all" if per_epoch else "last")
    frame = results.get_dataframe(filter_metric=task.metric, filter_mode=task.mode)
    fit = functools.partial(task.fit_from_trial, best) if per_epoch else None
    with tempfile.TemporaryDirectory() as tmp:
        csv, png = Path(tmp) / "tune_results.csv", Path(tmp) / "tune_results.png"
        frame.to_csv(csv, index=False)
        plots.tune_results_png(frame.dropna(subset=[task.metric]), task.metric, png, mode=task.mode)
        run_id, fit_metrics = fit_and_store(
            task, data_dir, data, best.config, store, fit=fit,
            extra_files={"tune_results.csv": csv, "tune_results.png": png},
            extra={"sweep": {"name": name, "storage": storage, "trials": len(frame), "best_trial": best.metrics_dataframe
                             .iloc[-1][[task.metric]].to_dict() if best.metrics_dataframe is not None else {}}})
    if promote:
        store.promote(task.name, run_id)
    return {"task": task.name, "run_id": run_id, "promoted": promote, "trials": len(frame),
            "sweep": f"{storage}/{name}", "best_config": best.config,
            f"trial_{task.metric}": float(frame[task.metric].agg(task.mode)), **fit_metrics}


def _filesystem(path: str):
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), str(Path(path).resolve())


def _write_sweep_file(experiment: str, value: dict) -> None:
    fs, path = _filesystem(experiment)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{SWEEP_FILE}") as fh:
        fh.write(json.dumps(value, indent=2).encode())


def _read_sweep_file(experiment: str) -> dict:
    import pyarrow.fs as pafs

    fs, path = _filesystem(experiment)
    if fs.get_file_info(f"{path}/{SWEEP_FILE}").type == pafs.FileType.NotFound:
        raise FacelabError(f"{experiment}: not a facelab sweep (no {SWEEP_FILE})")
    with fs.open_input_stream(f"{path}/{SWEEP_FILE}") as fh:
        return json.loads(fh.read().decode())
