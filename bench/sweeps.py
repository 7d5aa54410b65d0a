"""Sweeps: a full grid, Optuna without early stopping and ASHA + Optuna over the same space.

Two sweeps, each over its task's own search space (tuning/spaces/<task>.py, walked through the
same define-by-run function `facelab tune` hands Optuna) with every number discretised to the
values in GRIDS below, so the grid is the space's full (conditional) cross-product:

- occlusion (CPU-sized: fit_cases' 32-pixel, width-8 config, synthetic challenge layout): the
  female:male loss weight with the learning rate; budget `epochs` epochs per trial, ASHA on
  `epoch` with the space's own reduction factor and its grace period scaled to the budget;
- sentiment (synthetic embeddings): SVC and LightGBM (the space's `model` limited to those two);
  budget the task's 5 CV folds per trial, ASHA on `fold` (facelab's own sentiment sweep runs
  Optuna without a scheduler: its trials report once).

Every grid point's learning curve is computed once, by the task's own trial computation: the
occlusion recipe's train step and validation over the task's split and level weights (the plain
loop of bench/train_overhead.py; Ray Train gives the same per-epoch metric there), the sentiment
fold fits of facelab.estimators (their 5-fold score checked equal to the task's
`evaluate_config`). The three sweep methods then run as real Ray Tune sweeps (Tuner with
OptunaSearch / ASHAScheduler, one trial at a time as `facelab tune` runs on 2 CPUs) whose trial
replays the point's curve, so each method's compute is counted exactly in trial-epochs (folds)
and CPU-seconds. A sweep has "reached" the grid's best once any score it reported (for sentiment:
a full 5-fold score) is within 1% of the grid's best (relative: for occlusion's error-like score,
near zero, that is all but the grid's best point and epoch itself). The grid's compute is the
whole grid (it knows its best only at its end); the compute of a grid in a seeded random order
up to its first point within 1% is shown too. Optuna and ASHA + Optuna each get the grid's whole
compute as their budget (trial-epochs or folds; the per-trial budget is the grid's), and stop once
they are within 1% of the grid's best or have spent it: with early stopping, ASHA tries more points
in that budget, which is what it is for. Goal: ASHA + Optuna needs at most 40% of the grid's compute (median over the seeds; a seed that
never gets within 1% counts as never).
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

from harness import REPO, Disagreement, agree, arguments, cpus, main_guard, record
from ray.tune import Callback, Stopper

sys.path.insert(0, str(REPO / "tests" / "model"))

GOAL = 0.4  # ASHA + Optuna compute / grid compute
WITHIN = 0.01
GRIDS = {
    "occlusion": {"female_weight": [0.8, 1.2, 2.0], "lr": [1e-4, 5e-4, 3e-3]},
    "sentiment": {"model": ["svc", "lgbm"], "preprocess": ["l1", "standard"], "kernel": ["poly", "rbf"], "degree": [3],
                  "C": [0.1, 1.0, 10.0], "gamma": ["scale"], "num_leaves": [15], "learning_rate": [0.05, 0.2],
                  "n_estimators": [50, 200], "reg_lambda": [1e-3], "reg_alpha": [1e-3], "colsample_bytree": [0.5]},
}
SIZES = {
    "tiny": {"occlusion": {"n": 60, "epochs": 2, "grid": {"female_weight": [0.8, 2.0], "lr": [3e-3]}},
             "sentiment": {"n": 200, "grid": {"kernel": ["poly"], "C": [1.0], "learning_rate": [0.2],
                                              "n_estimators": [50], "preprocess": ["l1"]}}, "seeds": (0,)},
    "small": {"occlusion": {"n": 200, "epochs": 6}, "sentiment": {"n": 600}, "seeds": (0, 1, 2)},
    "large": {"occlusion": {"n": 600, "epochs": 12}, "sentiment": {"n": 1500}, "seeds": (0, 1, 2, 3, 4)},
}


# --- the space, discretised ------------------------------------------------------------------

class Discrete:
    """An Optuna trial seen by a space: every suggestion becomes a categorical over GRIDS' values."""

    def __init__(self, trial, grid: dict):
        self.trial, self.grid = trial, grid

    def _pick(self, name, choices=None):
        values = self.grid.get(name, choices)
        if values is None:
            raise KeyError(f"the bench grid has no values for '{name}'")
        return self.trial.suggest_categorical(name, list(values))

    def suggest_categorical(self, name, choices):
        return self._pick(name, choices)

    def suggest_float(self, name, low, high, **kwargs):
        return self._pick(name)

    def suggest_int(self, name, low, high, **kwargs):
        return self._pick(name)


def discrete_space(space_fn, grid: dict, trial) -> None:
    space_fn(Discrete(trial, grid))


class _Walk:
    """A trial that takes the choices of `path` (indices), then the first of each; records every choice."""

    def __init__(self, path: list[int]):
        self.path, self.taken, self.params = path, [], {}

    def suggest_categorical(self, name, choices):
        k = len(self.taken)
        index = self.path[k] if k < len(self.path) else 0
        self.taken.append(len(choices))
        self.params[name] = choices[index]
        return choices[index]


def grid_points(space_fn, grid: dict) -> list[dict]:
    """Every leaf of the discretised define-by-run space (its conditional cross-product)."""
    points, todo = [], [[]]
    while todo:
        path = todo.pop()
        walk = _Walk(path)
        discrete_space(space_fn, grid, walk)
        points.append(walk.params)
        indices = path + [0] * (len(walk.taken) - len(path))
        for k in range(len(path), len(walk.taken)):
            todo.extend(indices[:k] + [j] for j in range(1, walk.taken[k]))
    return points


def key(params: dict, names) -> tuple:
    return tuple(sorted((k, params[k]) for k in names if k in params))


# --- each grid point's curve, once ---------------------------------------------------------------

def occlusion_curves(points: list[dict], n: int, epochs: int, root: Path) -> tuple[list[dict], str]:
    """Per point: the validation score after every epoch and the seconds of each epoch."""
    import fit_cases
    from train_overhead import Timed, plain_fit

    from facelab.tasks import get_task
    from facelab.tasks.occlusion import weight_columns

    task = get_task("occlusion")
    data = task.read_for_fit(fit_cases.occlusion_data(root, n_train=n, n_test=10))
    train, val = task.split(data)
    frames = {"train": weight_columns(train).to_pandas(), "val": val.to_pandas()}
    base = {**fit_cases.cases()["occlusion"].config, "epochs": epochs}
    curves = []
    for point in points:
        config = task.config({**base, **point})
        start = time.time()
        run = plain_fit(Timed(task.recipe), config, frames, task.metric, workers=0)
        ends = [start] + [r["wall_time"] for r in run["history"]]
        curves.append({"scores": [r[task.metric] for r in run["history"]],
                       "seconds": [b - a for a, b in zip(ends, ends[1:])]})
        print(f"  occlusion {point}: {task.metric} by epoch {[round(s, 4) for s in curves[-1]['scores']]}", flush=True)
    return curves, f"{len(frames['train'])} train / {len(frames['val'])} val images, {epochs} epochs"


def sentiment_curves(points: list[dict], n: int, root: Path) -> tuple[list[dict], str]:
    """Per point: the running CV score after each fold (the task's folds) and each fold's seconds."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from facelab import estimators, metrics
    from facelab.formats import get_format
    from facelab.tasks import get_task
    from tuning import spaces
    from tuning.runner import _full_space

    import optuna

    task = get_task("sentiment")
    data = task.read_for_fit(get_format("sentiment").synthesize(root, n=n, seed=0))
    x, y = task.trial_data(data)
    space = spaces.for_task(task)
    curves = []
    for i, point in enumerate(points):
        config = task.config(_full_space(space.space, space.unused_defaults, task.default_config, {},
                                         optuna.trial.FixedTrial(point)))
        folds = int(config["cv_folds"])
        oof, done, scores, seconds = np.empty(len(y), dtype=object), np.zeros(len(y), bool), [], []
        for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
            start = time.process_time()
            oof[test_idx] = estimators._fit_fold(config, x, y, train_idx, 0).predict(x[test_idx])
            seconds.append(time.process_time() - start)
            done[test_idx] = True
            scores.append(metrics.classification(list(y[done]), list(oof[done]))[task.metric])
        if i == 0:  # the fold-by-fold computation is the task's own trial computation
            agree([task.evaluate_config(config, (x, y))[task.metric]], [scores[-1]], 1e-12,
                  what="sentiment 5-fold score against SentimentTask.evaluate_config")
        curves.append({"scores": scores, "seconds": seconds})
    return curves, f"{len(y)} rows (train+val), {folds}-fold CV"


# --- the sweeps, run by Ray Tune over the curves ------------------------------------------------

def replay(config: dict, curves: dict, names: tuple, time_attr: str, metric: str) -> None:
    from ray import tune

    curve = curves[key(config.get("point", config), names)]
    for step, (score, seconds) in enumerate(zip(curve["scores"], curve["seconds"]), start=1):
        tune.report({metric: score, time_attr: step, "cost_s": seconds, "seq": time.time_ns()})


def run_sweep(method: str, setup: dict, seed: int, storage: Path, best: float) -> list[dict]:
    """The reports of one sweep, in the order they were made."""
    import random

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    metric, mode, steps = setup["metric"], setup["mode"], setup["steps"]
    trainable = tune.with_parameters(replay, curves=setup["curves"], names=setup["names"], time_attr=setup["time_attr"],
                                     metric=metric)
    trials = len(setup["points"])
    if method == "grid":
        order = list(setup["points"])
        random.Random(seed).shuffle(order)
        param_space, tune_config = {"point": tune.grid_search(order)}, tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True)
    else:
        searcher = OptunaSearch(space=functools.partial(discrete_space, setup["space"], setup["grid"]), metric=metric,
                                mode=mode, seed=seed)
        scheduler = None
        if method == "asha":
            asha = setup["asha"]
            scheduler = ASHAScheduler(metric=metric, mode=mode, time_attr=setup["time_attr"], max_t=steps,
                                      grace_period=asha["grace_period"], reduction_factor=asha["reduction_factor"])
        # every trial reports at least once: the budget in trial-steps bounds the trials
        param_space, tune_config = None, tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                         num_samples=trials * steps, max_concurrent_trials=1,
                                                         reuse_actors=True)
    reports = Reports()
    stop = None if method == "grid" else Budget(setup, best, trials * steps)
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space=param_space, tune_config=tune_config,
                       run_config=tune.RunConfig(name=f"{setup['task']}-{method}-{seed}", storage_path=str(storage),
                                                 verbose=0, callbacks=[reports], stop=stop))
    tuner.fit()
    return sorted(reports.rows, key=lambda r: r["seq"])


class Reports(Callback):
    """Every result the sweep's trials report, as the driver receives them."""

    def __init__(self):
        self.rows = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.rows.append(dict(result))


class Budget(Stopper):
    """Ends a sweep once it has spent `budget` trial-steps or reported a score within 1% of `best`
    (trials run one at a time, so the driver sees the steps in the order they were spent)."""

    def __init__(self, setup: dict, best: float, budget: int):
        self.setup, self.best, self.budget = setup, best, budget
        self.spent, self.done = 0, False

    def __call__(self, trial_id, result) -> bool:
        self.spent += 1
        self.done = self.done or self.spent >= self.budget or (
            counts(result, self.setup) and within(result[self.setup["metric"]], self.best, self.setup["mode"]))
        return self.done

    def stop_all(self) -> bool:
        return self.done


def counts(report: dict, setup: dict) -> bool:
    """Whether a report's score counts as a sweep's result (for sentiment: only a full CV score)."""
    return not setup["final_only"] or report[setup["time_attr"]] == setup["steps"]


def within(score: float, best: float, mode: str) -> bool:
    return score <= best + WITHIN * abs(best) if mode == "min" else score >= best - WITHIN * abs(best)


def compute_to_reach(reports: list[dict], setup: dict, best: float) -> dict:
    """Trial-steps and CPU-seconds spent until the first report within 1% of `best` (and in all)."""
    steps = seconds = 0.0
    reached = None
    for r in reports:
        steps, seconds = steps + 1, seconds + r["cost_s"]
        if reached is None and counts(r, setup) and within(r[setup["metric"]], best, setup["mode"]):
            reached = {"steps": steps, "cpu_s": seconds, "score": r[setup["metric"]]}
    return {"reached": reached, "total_steps": steps, "total_cpu_s": seconds}


def sweep_figures(name: str, setup: dict, seeds, storage: Path) -> tuple[dict, list[str]]:
    pick = min if setup["mode"] == "min" else max
    if setup["final_only"]:
        best = pick(c["scores"][-1] for c in setup["curves"].values())
    else:
        best = pick(s for c in setup["curves"].values() for s in c["scores"])
    grid_total = sum(len(c["scores"]) for c in setup["curves"].values())
    unit = setup["time_attr"] + "s"
    reports = {method: [run_sweep(method, setup, seed, storage, best) for seed in seeds] for method in ("grid", "optuna", "asha")}
    runs = {method: [compute_to_reach(rep, setup, best) for rep in reps] for method, reps in reports.items()}
    for method, rs in runs.items():
        if method == "grid" and any(r["reached"] is None for r in rs):
            raise Disagreement(f"{name}: the full grid never reached its own best score")
        if method == "grid" and any(r["total_steps"] != grid_total for r in rs):
            raise Disagreement(f"{name}: the grid ran {rs[0]['total_steps']} trial-{unit}, not {grid_total}")

    def median(method, what):  # a seed whose sweep never got within 1% counts as never (infinity)
        return statistics.median((r["reached"] or {}).get(what, math.inf) for r in runs[method])

    def best_found(method):
        return statistics.median(pick(r[setup["metric"]] for r in rep if counts(r, setup))
                                 for rep in reports[method])

    grid_cpu = sum(sum(c["seconds"]) for c in setup["curves"].values())
    summary = {"best": best, "grid_points": len(setup["points"]), "grid_trial_steps": grid_total,
               "grid_cpu_s": round(grid_cpu, 2), "unit": unit, "seeds": list(seeds),
               **{f"{m}_{w}_to_1pct": median(m, w) for m in runs for w in ("steps", "cpu_s")},
               **{f"{m}_reached": sum(r["reached"] is not None for r in runs[m]) for m in runs},
               **{f"{m}_best_found": best_found(m) for m in runs},
               **{f"{m}_total_steps": statistics.median(r["total_steps"] for r in runs[m]) for m in runs}}
    # the grid's compute: all of it (a grid knows its best only at its end); also shown, the grid in a
    # seeded random order up to its first point within 1%
    ratio = summary["asha_steps_to_1pct"] / grid_total
    ratio_cpu = summary["asha_cpu_s_to_1pct"] / grid_cpu
    ratio_ordered = summary["asha_steps_to_1pct"] / summary["grid_steps_to_1pct"]
    summary.update(ratio_asha_grid=ratio, ratio_asha_grid_cpu=ratio_cpu, ratio_asha_grid_to_1pct=ratio_ordered,
                   met=bool(ratio <= GOAL))
    shown = lambda v, f=":g": "never" if v == math.inf else format(v, f[1:])  # noqa: E731
    lines = [f"{name} sweep ({setup['about']}; grid {len(setup['points'])} points x {setup['steps']} {unit}, best "
             f"{setup['metric']} {best:.4g}): trial-{unit} to within 1% of it (median of {len(seeds)} seeds): full grid "
             f"{grid_total} (a random-order grid reaches it after {shown(summary['grid_steps_to_1pct'])}), Optuna "
             f"{shown(summary['optuna_steps_to_1pct'])}, ASHA+Optuna {shown(summary['asha_steps_to_1pct'])}; CPU-s: "
             f"full grid {grid_cpu:.1f}, Optuna {shown(summary['optuna_cpu_s_to_1pct'], ':.1f')}, ASHA+Optuna "
             f"{shown(summary['asha_cpu_s_to_1pct'], ':.1f')}; best found (median): Optuna "
             f"{summary['optuna_best_found']:.4g}, ASHA+Optuna {summary['asha_best_found']:.4g}",
             f"{name} sweep: ASHA+Optuna / full grid compute = {shown(ratio, ':.2f')} (trial-{unit}), "
             f"{shown(ratio_cpu, ':.2f')} (CPU-s); goal <= {GOAL}: {'met' if ratio <= GOAL else 'MISSED'}; seeds "
             f"reaching within 1%: Optuna {summary['optuna_reached']}, ASHA+Optuna {summary['asha_reached']} of {len(seeds)}"]
    for line in lines:
        print(line, flush=True)
    return {k: None if v == math.inf else v for k, v in summary.items()}, lines


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    size = SIZES[args.size]
    from facelab.cluster import connect
    from facelab.tasks import get_task
    from tuning import spaces

    connect(quiet=True)
    print(f"CPUs: {cpus()}; size {args.size}")
    results, figures = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-sweeps-") as tmp:
        for name in ("occlusion", "sentiment"):
            task, options = get_task(name), size[name]
            space = spaces.for_task(task)
            grid = {**GRIDS[name], **options.get("grid", {})}
            points = grid_points(space.space, grid)
            start = time.time()
            if name == "occlusion":
                curves, about = occlusion_curves(points, options["n"], options["epochs"], Path(tmp) / name)
                time_attr, asha = "epoch", dict(space.asha)
                steps = options["epochs"]
                # the space's rungs (grace 3 of 30 epochs) scaled to this budget
                asha["grace_period"] = max(1, round(asha["grace_period"] * steps / asha["max_t"]))
            else:
                curves, about = sentiment_curves(points, options["n"], Path(tmp) / name)
                time_attr, asha, steps = "fold", {"grace_period": 1, "reduction_factor": 2}, len(curves[0]["scores"])
            print(f"{name}: {len(points)} grid points' curves in {time.time() - start:.0f} s", flush=True)
            names = sorted(grid)
            setup = {"task": name, "metric": task.metric, "mode": task.mode, "points": points, "grid": grid,
                     "space": space.space, "names": names, "curves": {key(p, names): c for p, c in zip(points, curves)},
                     "time_attr": time_attr, "steps": steps, "asha": asha, "final_only": name == "sentiment",
                     "about": about}
            results[name], lines = sweep_figures(name, setup, size["seeds"], Path(tmp) / "tune")
            results[name]["asha"] = asha
            figures += lines
    cases = [{"case": f"{name} sweep compute to within 1% of the grid's best", "unit": "trials", "summary": summary}
             for name, summary in results.items()]
    notes = {"occlusion": "ASHA on epochs as facelab tune runs it", "sentiment":
             "ASHA on CV folds is the bench's (facelab's sentiment sweep is Optuna alone: its trials report once)"}
    for name, summary in results.items():
        summary["note"] = notes[name]
    record("sweeps", {"cases": [], "figures": figures, "sweeps": results,
                      "method": "tabular: each discretised grid point's curve computed once, the sweeps replayed by "
                                "Ray Tune (OptunaSearch, ASHAScheduler) over those curves", "details": cases}, args)
    return 0


if __name__ == "__main__":
    main_guard(main)
