"""The base of every torch task: a Task whose model is trained by facelab.torch_train.

A torch task sets `recipe` (a TorchRecipe instance) and the usual Task attributes; `metric` must
be one of the keys its recipe's `evaluate` returns. `fit` trains through `fit_torch`
(TorchTrainer over the Ray Datasets of `fit_splits`, which are fed to the trainer as "train" and
"val"). In a Tune sweep (tuning/runner.py) each trial's `run_trial` is `fit_torch` with
`in_tune=True`, so ASHA sees every epoch; the winning trial's best checkpoint is then adopted
through `fit_from_trial` instead of training again; `ReleaseWorkerGroups` frees the worker
groups of trials that ASHA stopped.

The config keys the mechanism reads are TorchConfig's (facelab.task_config).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from pathlib import Path
from typing import Any, ClassVar

from facelab.formats import Read
from facelab.tasks.base import Task
from facelab.torch_train import WORKER_GROUP, TorchRecipe, export_checkpoint, fit_torch, release_worker_group

TRAINER_SPLITS = ("train", "val")
TRIAL_DRIVER_CPU = 0.01
CHECKPOINT_PATH = "checkpoint_path"  # the column TuneReportCallback adds to every reported epoch


class TorchTask(Task):
    recipe: ClassVar[TorchRecipe]
    reports_per_epoch = True

    def trial_data(self, data: dict[str, Read]) -> dict[str, Any]:
        """The Ray Datasets the trainer reads, keyed "train" and "val"."""
        return {role: data[split].dataset for role, split in zip(TRAINER_SPLITS, self.fit_splits)}

    def run_name(self, config: dict) -> str:
        return config["run_name"] or f"{self.name}-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path, start: dict | None = None) -> dict[str, float]:
        """`start`: a backbone trunk's weights (facelab.backbone.pin) the model starts from."""
        return fit_torch(self.recipe, config, self.trial_data(data), model_dir, metric=self.metric, mode=self.mode,
                         name=self.run_name(config), storage_path=config["storage_path"], start=start)

    # --- Tune ------------------------------------------------------------------------------
    def tune_concurrency(self) -> int:
        """Trials at once: one per GPU, else one per two spare CPUs."""
        import ray

        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        return gpus if gpus else max(1, int(resources.get("CPU", 1) - 1) // 2)

    def trial_cpus(self, trials: int) -> float:
        """CPUs for each trial's Train workers when `trials` trials run at once. One whole CPU
        stays free for Ray Data (its default tasks ask 1 CPU each): trials whose workers took it
        would wait forever for their own data."""
        import ray

        spare = max(0.5, float(ray.cluster_resources().get("CPU", 1)) - 1 - TRIAL_DRIVER_CPU * trials)
        return spare / trials

    def trial_resources(self, trials: int | None) -> dict[str, float]:
        """The trial driver holds a token CPU share (Tune refuses an empty request): its
        TorchTrainer's workers hold the trial's resources."""
        return {"cpu": TRIAL_DRIVER_CPU}

    def trial_options(self, trials: int | None) -> dict:
        return {"cpus_per_trial": self.trial_cpus(trials or self.tune_concurrency())}

    def run_trial(self, config: dict, trial_data, *, cpus_per_trial: float, start: dict | None = None) -> None:
        """One Tune trial: a TorchTrainer reporting every epoch to Tune. Its Train run is named
        after the trial and kept beside the sweep, so a resumed sweep resumes it."""
        self.train_in_trial(self.recipe, config, trial_data, cpus_per_trial, start)

    def train_in_trial(self, recipe: TorchRecipe, config: dict, datasets: dict, cpus_per_trial: float,
                       start: dict | None = None) -> None:
        from ray import tune

        context = tune.get_context()
        storage = context.get_storage()
        workers = int(config["num_workers"] or 1)  # null: one worker per trial
        fit_torch(recipe, config, datasets, None, metric=self.metric, mode=self.mode,
                  name=f"train-{context.get_trial_id() or uuid.uuid4().hex[:8]}",
                  storage_path=storage.experiment_fs_path, storage_filesystem=storage.storage_filesystem,
                  num_workers=workers, cpus_per_worker=cpus_per_trial / workers, in_tune=True, start=start)

    def tune_run_config(self, name: str, storage: str, **kwargs):
        """The sweep's RunConfig, with the callback that frees stopped trials' worker groups."""
        from ray import tune

        return tune.RunConfig(name=name, storage_path=storage, callbacks=[_release_worker_groups_class()()], **kwargs)

    def fit_from_trial(self, result, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """A finished trial's best checkpoint (kept by its CheckpointConfig) as the model folder."""
        from ray.train import Checkpoint

        frame = result.metrics_dataframe.dropna(subset=[self.metric, CHECKPOINT_PATH])
        kept = frame[[_exists(result.filesystem, p) for p in frame[CHECKPOINT_PATH]]]
        if kept.empty:
            raise RuntimeError(f"trial {result.path} has no checkpoint left with '{self.metric}'")
        best = kept.loc[kept[self.metric].idxmax() if self.mode == "max" else kept[self.metric].idxmin()]
        return export_checkpoint(Checkpoint(best[CHECKPOINT_PATH], result.filesystem),
                                 Checkpoint(kept[CHECKPOINT_PATH].iloc[-1], result.filesystem), model_dir,
                                 metric=self.metric, mode=self.mode)


@functools.cache
def _release_worker_groups_class():
    # built on first use: ray.tune costs a new worker process about 0.6 s to import, and Ray Data
    # and Train workers that unpickle a recipe import this module without ever running a sweep
    from ray.tune import Callback

    class ReleaseWorkerGroups(Callback):
        """A Tune callback (in the sweep's driver) that frees a Train run's worker group when its trial
        ends: finished (then it is gone already), failed, or stopped by the scheduler, which kills the
        trial and its Train controller before the controller can free the group. The group's id comes
        with the trial's results (torch_train.WORKER_GROUP)."""

        def __init__(self):
            self.groups: dict[str, str] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get(WORKER_GROUP):
                self.groups[trial.trial_id] = result[WORKER_GROUP]

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._release(trial.trial_id)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._release(trial.trial_id)

        def on_experiment_end(self, trials, **info):
            for trial_id in list(self.groups):
                self._release(trial_id)

        def _release(self, trial_id: str) -> None:
            group = self.groups.pop(trial_id, None)
            if group:
                release_worker_group(group)

    return ReleaseWorkerGroups


def __getattr__(name: str):
    """`ReleaseWorkerGroups`, the Tune callback class (PEP 562: made when first asked for)."""
    if name == "ReleaseWorkerGroups":
        return _release_worker_groups_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _exists(filesystem, path: str) -> bool:
    import pyarrow.fs as pafs

    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


class ImageTorchTask(TorchTask):
    """A torch task over image rows (paths and labels): the trainer reads them shuffled, in blocks
    that prepare their images as parallel Ray Data tasks on every CPU (facelab.vision.training_datasets)."""

    def trial_data(self, data: dict[str, Read]) -> dict[str, Any]:
        from facelab.vision import training_datasets

        datasets = super().trial_data(data)
        return training_datasets(datasets["train"], datasets["val"])
