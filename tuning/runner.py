"""The Tune runner, generic over tasks: Optuna search over the task's space (the task's default
config always the first trial), trials in parallel on the cluster, then the winner stored with
its sweep's results and promoted.

Every trial runs facelab.trial.trial, the one trial function of every kind of task.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tempfile
from pathlib import Path

from facelab import backbone
from facelab.config import absolute
from facelab.errors import FacelabError
from facelab.store import ModelStore
from facelab.tasks import Task, get_task
from facelab.train import fit_and_store, load_fit_data
from facelab.trial import trainable
from tuning import spaces

# how many random draws of a search space are checked against the task's config model up front
SPACE_CHECK_DRAWS = 16
# a failing trial is retried this many times, each from its latest checkpoint, before it counts as failed
TRIAL_RETRIES = 2


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


def _space_with(space: spaces.SearchSpace, defaults: dict, fixed: dict | None):
    """The task's define-by-run space completed (picklable: Tune saves the searcher)."""
    return functools.partial(_full_space, space.space, space.unused_defaults, dict(defaults), dict(fixed or {}))


class _DefaultTrial:
    """Walks a define-by-run space answering every suggestion with the default config's value
    (when the space allows it): the parameters of the default config's point."""

    def __init__(self, defaults: dict):
        self.defaults, self.point = defaults, {}

    def _take(self, name: str, allowed, fallback):
        value = self.defaults.get(name)
        if name in self.defaults and allowed(value):
            self.point[name] = value
            return value
        return fallback

    def suggest_categorical(self, name, choices):
        return self._take(name, lambda v: v in choices, choices[0])

    def suggest_float(self, name, low, high, **kwargs):
        return self._take(name, lambda v: isinstance(v, (int, float)) and low <= v <= high, low)

    def suggest_int(self, name, low, high, **kwargs):
        return self._take(name, lambda v: isinstance(v, int) and low <= v <= high, low)


def points_to_evaluate(space: spaces.SearchSpace, defaults: dict, fixed: dict) -> list[dict]:
    """The default config's point first, then the space's extra points (none twice)."""
    walker = _DefaultTrial({**defaults, **fixed})
    space.space(walker)
    points = []
    for point in [walker.point, *space.extra_points]:
        point = {k: v for k, v in point.items() if k not in fixed}
        if point not in points:
            points.append(point)
    return points


def check_space(task: Task, space: spaces.SearchSpace, fixed: dict, points: list[dict], seed: int = 0) -> None:
    """Every key a sweep could hand a trial exists in the task's config model, with a valid value:
    the default point, the extra points and random draws of the space, checked before any trial runs."""
    import optuna

    complete = _space_with(space, task.default_config, fixed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for point in points:
        study.enqueue_trial(point)
    for _ in range(len(points) + SPACE_CHECK_DRAWS):
        drawn = study.ask()
        constants = complete(drawn)  # OptunaSearch's config: the suggested values and the returned constants
        task.config({**drawn.params, **constants}, source=f"search space {space.module}")
        study.tell(drawn, 0.0)


def sweep(task_name: str, data_dir: Path, store_uri: str, *, samples: int = 20, promote: bool = True,
          skip_bad: bool = False, max_concurrent: int | None = None, seed: int = 0,
          budget_minutes: float | None = None, fixed: dict | None = None, max_failures: int = TRIAL_RETRIES,
          early_stop: bool = True) -> dict:
    """`facelab tune`: returns the sweep summary (best config, its trial metrics, the stored run,
    the trials that failed and why). `budget_minutes` caps the whole sweep's wall time (Tune stops
    the trials still running); `fixed` config values hold in every trial, whatever the search space
    says (e.g. a CI-sized model and epoch count). A trial that raises is retried `max_failures`
    times, each from its latest checkpoint (Tune's FailureConfig), then reported as failed; only a
    sweep whose every trial failed is an error. `early_stop`: ASHA stops weak trials at the rungs
    the task's search space names (tasks that report every epoch); False runs every trial to its end."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    task = get_task(task_name)
    fixed = task.check_keys(dict(fixed or {}), source="--config")
    data_dir = absolute(data_dir)  # the trials run in Ray workers, elsewhere than this working directory
    space = spaces.for_task(task)
    points = points_to_evaluate(space, task.default_config, fixed)
    check_space(task, space, fixed, points, seed)
    store = ModelStore(store_uri)
    fixed, start = _backbone(task, fixed, store)
    data = load_fit_data(task, data_dir, skip_bad=skip_bad)
    if max_concurrent is None:
        max_concurrent = task.tune_concurrency()
    searcher = OptunaSearch(space=_space_with(space, task.default_config, fixed), metric=task.metric, mode=task.mode,
                            points_to_evaluate=points, seed=seed)
    # tasks that report every epoch stop poor trials early
    scheduler = ASHAScheduler(metric=task.metric, mode=task.mode, **space.asha) if space.asha and early_stop else None
    name = f"{task.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    storage = store.sweeps_path(task.name)
    store.save_sweep(f"{storage}/{name}", {"task": task.name, "data": str(data_dir), "skip_bad": skip_bad,
                                           "samples": samples, "budget_minutes": budget_minutes,
                                           "max_concurrent": max_concurrent, "max_failures": max_failures,
                                           "early_stop": early_stop, "fixed": fixed})
    tuner = tune.Tuner(
        trainable(task, task.trial_data(data), max_concurrent, start),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples, max_concurrent_trials=max_concurrent,
                                    scheduler=scheduler, time_budget_s=budget_minutes * 60 if budget_minutes else None),
        run_config=task.tune_run_config(name, storage, verbose=1,
                                        failure_config=tune.FailureConfig(max_failures=max_failures)),
    )
    results = _complete(tuner.fit(), f"{storage}/{name}", samples, budget_minutes, task.metric)
    return _store_best(task, data_dir, data, results, store, name, storage, promote)


def _backbone(task: Task, fixed: dict, store: ModelStore) -> tuple[dict, dict | None]:
    """`fixed` with a `backbone` pinned to one run id, and that trunk's weights for every trial
    (None when the sweep names no backbone)."""
    if not fixed.get("backbone"):
        return fixed, None
    pinned, start = backbone.pin(task.name, task.config(fixed, source="--config"), store)
    return {**fixed, "backbone": pinned["backbone"]}, start


def _complete(results, path: str, samples: int, budget_minutes: float | None, metric: str):
    """The results of a sweep that ran to its end; an interrupted one (Ctrl+C) is an error that
    says how to resume it, and nothing is stored or promoted from it. Whether it ended is read
    from the experiment state Tune saved, which is what `resume` continues from."""
    from ray.tune import ExperimentAnalysis

    if len(results) and results.num_errors == len(results):
        raise FacelabError(f"every trial of the sweep failed ({path}); the first: {one_line(results.errors[0])}")
    trials = ExperimentAnalysis(path).trials
    finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    if finished < len(trials) or (len(trials) < samples and not budget_minutes):
        raise FacelabError(f"sweep interrupted ({finished} of {samples} trials finished); "
                           f"continue it with `facelab tune --resume {path}`")
    require_reported(results.get_dataframe(), metric, path, budget_minutes)
    return results


_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:|$)")


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """A trial's error as one line: under a (remote) traceback, the last `SomeError: message`
    line; else the exception's type and the first line of its message."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    raised = [line for line in lines if _RAISED.match(line)]
    if raised:
        text = raised[-1]
    else:
        text = (lines[0] if isinstance(error, BaseException) else lines[-1]) if lines else ""
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def failed_trials(results) -> list[dict]:
    """The trials that failed after their retries: trial id, its config and the one-line reason."""
    failed = []
    for result in results:
        if result.error is not None:
            trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
            failed.append({"trial_id": trial_id, "path": result.path, "error": one_line(result.error),
                           "config": result.config})
    return failed


def results_table(frame, failed: list[dict]):
    """The sweep's result table: every trial that reported, `error` "" or why it failed, and the
    failed trials that never reported as rows of their own."""
    import pandas as pd

    reasons = {f["trial_id"]: f["error"] for f in failed}
    frame = frame.copy()
    frame["error"] = [reasons.get(t, "") for t in frame["trial_id"]] if "trial_id" in frame else ""
    unreported = [f for f in failed if "trial_id" not in frame or f["trial_id"] not in set(frame["trial_id"])]
    if unreported:
        frame = pd.concat([frame, pd.DataFrame([{"trial_id": f["trial_id"], "error": f["error"],
                                                 **{f"config/{k}": v for k, v in (f["config"] or {}).items()}}
                                                for f in unreported])], ignore_index=True)
    return frame


def require_reported(frame, metric: str, path: str, budget_minutes: float | None) -> None:
    """A sweep whose budget ran out before any trial reported its metric has no best trial:
    say so, and how to go on, rather than let Tune fail on the empty result."""
    if metric in frame and frame[metric].notna().any():
        return
    within = f" within the {budget_minutes:g}-minute budget" if budget_minutes else ""
    raise FacelabError(f"no trial of the sweep reported '{metric}'{within}, so there is nothing to store ({path}); "
                       f"give it a larger --budget-minutes, or continue it with `facelab tune --resume {path}`")


def resume(sweep_path: str, store_uri: str, *, promote: bool = True, retry_failed: bool = False) -> dict:
    """`facelab tune --resume PATH`: continue an interrupted sweep where it stopped (Tuner.restore:
    unfinished trials go on from their latest checkpoint; trials that failed after their retries
    stay failed unless `retry_failed`), then store and promote its best as `sweep` does."""
    from ray import tune

    sweep_path = sweep_path.rstrip("/") if "://" in sweep_path else str(absolute(sweep_path))
    store = ModelStore(store_uri)
    saved = store.read_sweep(sweep_path)
    task = get_task(saved["task"])
    data_dir = Path(saved["data"])
    data = load_fit_data(task, data_dir, skip_bad=bool(saved.get("skip_bad")))
    if not tune.Tuner.can_restore(sweep_path):
        raise FacelabError(f"{sweep_path}: no Tune experiment state to resume")
    _, start = _backbone(task, saved.get("fixed") or {}, store)
    tuner = tune.Tuner.restore(sweep_path, trainable=trainable(task, task.trial_data(data), saved.get("max_concurrent"),
                                                               start),
                               resume_unfinished=True, resume_errored=retry_failed)
    results = _complete(tuner.fit(), sweep_path, int(saved.get("samples", 0)), saved.get("budget_minutes"), task.metric)
    storage, name = sweep_path.rsplit("/", 1)
    return _store_best(task, data_dir, data, results, store, name, storage, promote)


def _store_best(task: Task, data_dir: Path, data, results, store: ModelStore, name: str, storage: str,
                promote: bool) -> dict:
    """The sweep's winner stored with the sweep's results (and promoted): refitted from its config,
    or, for tasks that train per epoch in their trials, the best trial's best checkpoint itself."""
    from facelab import plots

    per_epoch = task.reports_per_epoch
    best = results.get_best_result(task.metric, task.mode, scope="all" if per_epoch else "last")
    frame = results.get_dataframe(filter_metric=task.metric, filter_mode=task.mode)
    failures = failed_trials(results)
    failed = [{"trial_id": f["trial_id"], "error": f["error"]} for f in failures]
    fit = functools.partial(task.fit_from_trial, best) if per_epoch else None
    with tempfile.TemporaryDirectory() as tmp:
        csv, png = Path(tmp) / "tune_results.csv", Path(tmp) / "tune_results.png"
        results_table(frame, failures).to_csv(csv, index=False)
        plots.tune_results_png(frame.dropna(subset=[task.metric]), task.metric, png, mode=task.mode)
        run_id, fit_metrics = fit_and_store(
            task, data_dir, data, best.config, store, fit=fit,
            extra_files={"tune_results.csv": csv, "tune_results.png": png},
            extra={"sweep": {"name": name, "storage": storage, "trials": len(frame), "failed_trials": failed,
                             "best_trial": best.metrics_dataframe.iloc[-1][[task.metric]].to_dict()
                             if best.metrics_dataframe is not None else {}}})
    if promote:
        store.promote(task.name, run_id)
    return {"task": task.name, "run_id": run_id, "promoted": promote, "trials": len(frame),
            "failed_trials": failed, "sweep": f"{storage}/{name}", "best_config": best.config,
            f"trial_{task.metric}": float(frame[task.metric].agg(task.mode)), **fit_metrics}
