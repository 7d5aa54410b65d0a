"""Torch tasks whose recipe and training config depend on the data, prepared once per fit or sweep.

A `TorchTask` trains its class-level `recipe` on a config Tune gives it. Some tasks need more
from the data first: the MCS2019 aggregator its PCA and reference descriptors, FairFace its label
vocabularies and class frequencies. Such a task implements `prepare_data(data, config)` (in the
driver, once: the Ray Datasets for the trainer and a picklable `state`) and `trainer_inputs(config,
state)` (the recipe and the full training config for one config); fits, Tune trials and the
winner's adoption (`fit_from_trial`, inherited) then all go through the same `fit_torch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelab.formats import Read
from facelab.tasks.torch_task import TorchTask
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
        """Prepared once per sweep (with the default config) and kept for `report`."""
        key = id(data)
        if getattr(self, "_prepared_for", None) != key:
            self._prepared, self._prepared_for = self.prepare_data(data, self.default_config), key
        return self._prepared

    def train(self, config: dict, prepared: Prepared, model_dir: Path, start: dict | None = None) -> dict[str, float]:
        recipe, full_config = self.trainer_inputs(config, prepared.state)
        return fit_torch(recipe, full_config, prepared.datasets, model_dir, metric=self.metric, mode=self.mode,
                         name=self.run_name(config), storage_path=config["storage_path"], start=start)

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path, start: dict | None = None) -> dict[str, float]:
        prepared = self.prepare_data(data, config)
        self._prepared, self._prepared_for = prepared, id(data)
        return self.train(config, prepared, Path(model_dir), start)

    def run_trial(self, config: dict, trial_data: Prepared, *, cpus_per_trial: float, start: dict | None = None) -> None:
        """One Tune trial: the task's recipe for this config, trained as TorchTask's trials are."""
        recipe, full_config = self.trainer_inputs(config, trial_data.state)
        self.train_in_trial(recipe, full_config, trial_data.datasets, cpus_per_trial, start)
