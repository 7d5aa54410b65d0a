"""The one Ray Tune trial function of every task, and the trainable that binds a task's data to it.

`trial` calls the task's `run_trial`: one cross-validated `evaluate_config` for an estimator task,
a Ray Train run reporting every epoch for a torch task, an ultralytics fit reporting every epoch
for a YOLO task. Sweeps (tuning.runner) and single YOLO fits both go through it.
"""

from __future__ import annotations


def trial(config: dict, task_name: str, trial_data, options: dict) -> None:
    """A Tune function trainable (runs in a Ray worker)."""
    from facelab.tasks import get_task

    get_task(task_name).run_trial(config, trial_data, **options)


def trainable(task, trial_data, trials: int | None, start: dict | None = None):
    """`trial` with the task's trial data (in the object store once per sweep) and resources bound,
    sized for `trials` trials at once; `start`, a backbone trunk's weights every trial starts from."""
    from ray import tune

    options = task.trial_options(trials)
    if start is not None:
        options = {**options, "start": start}
    return tune.with_resources(
        tune.with_parameters(trial, task_name=task.name, trial_data=trial_data, options=options),
        task.trial_resources(trials))
