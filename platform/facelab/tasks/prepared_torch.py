"""Torch tasks whose recipe and training config depend on the data, prepared once per fit or sweep.

A `TorchTask` trains its class-level `recipe` on a config Tune gives it. Some tasks need more
from the data first: the MCS2019 aggregator its PCA and reference descriptors, FairFace its label
vocabularies and class frequencies. Such a task implements `prepare_data(data, config)` (in the
driver, once: the Ray Datasets for the trainer and a picklable `state`) and `trainer_inputs(config,
state)` (the recipe and the full training config for one config); fits, Tune trials and the
winner's adoption (`fit_from_trial`, inherited) then all go through the same `fit_torch`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelab.formats import Read
from facelab.tasks.torch_task import TRIAL_DRIVER_CPU, TorchTask
from facelab.torch_train import TorchRecipe, fit_torch


@dataclass
class Prepared:
    """What every fit of a task on one data set shares: the trainer's datasets ("train", "val")
    and the state its recipe is built from."""

    datasets: dict[str, Any]
    state: Any


class PreparedTorchTask(TorchTask):
    recipe = None  # built per data set by trainer_inputs

    def prepare_data(self, data: dict[str, Read], config: dict) -> Prepared:
        raise NotImplementedError

    def trainer_inputs(self, config: dict, state: Any) -> tuple[TorchRecipe, dict]:
        raise NotImplementedError

    def trial_data(self, data: dict[str, Read]) -> Prepared:
        """Prepared once per sweep (with the default config) and kept for `after_fit`."""
        key = id(data)
        if getattr(self, "_prepared_for", None) != key:
            self._prepared, self._prepared_for = self.prepare_data(data, self.default_config), key
        return self._prepared

    def train(self, config: dict, prepared: Prepared, model_dir: Path | None, **fit_options) -> dict[str, float]:
        recipe, full_config = self.trainer_inputs(config, prepared.state)
        fit_options.setdefault("name", self.run_name(config))
        fit_options.setdefault("storage_path", config.get("storage_path"))
        return fit_torch(recipe, full_config, prepared.datasets, model_dir, metric=self.metric, mode=self.mode,
                         **fit_options)

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        prepared = self.prepare_data(data, config)
        self._prepared, self._prepared_for = prepared, id(data)
        return self.after_fit(config, data, Path(model_dir), self.train(config, prepared, Path(model_dir)))

    def tune_trainable(self, data: dict[str, Read], trials: int | None = None):
        """As TorchTask's, with the prepared data shipped to every trial once (object store)."""
        from ray import tune

        cpus = self.trial_cpus(trials or self.tune_concurrency())
        return tune.with_resources(tune.with_parameters(prepared_trial, task_name=self.name,
                                                        prepared=self.trial_data(data), cpus_per_trial=cpus),
                                   {"cpu": TRIAL_DRIVER_CPU})


def prepared_trial(config: dict, task_name: str, prepared: Prepared, cpus_per_trial: float) -> None:
    """One Tune trial: the task's recipe for this config, trained reporting every epoch to Tune,
    its Train run named after the trial and kept beside the sweep (so a resumed sweep resumes it)."""
    from ray import tune

    from facelab.tasks import get_task

    context = tune.get_context()
    storage = context.get_storage()
    workers = int(config.get("num_workers", 1))
    get_task(task_name).train(config, prepared, None, name=f"train-{context.get_trial_id() or uuid.uuid4().hex[:8]}",
                              storage_path=storage.experiment_fs_path, storage_filesystem=storage.storage_filesystem,
                              num_workers=workers, cpus_per_worker=cpus_per_trial / workers, in_tune=True)
