"""The task contract: what jobs, tuning and serve need from every task, and nothing more.

A task names its data format, default config and metric, fits a model folder from a config,
scores one config for a Tune trial, and supplies a batch predictor: a callable class built from
a model folder that maps a batch (dict of numpy arrays) to predictions, used unchanged by
`Dataset.map_batches` in batch jobs and inside the Serve deployment. Its search space lives in
`tuning/spaces/<task>.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel

from facelab.formats import Format, Read, get_format


class Task(ABC):
    name: ClassVar[str]
    seed: ClassVar[str]  # which seed system (and section) it reproduces
    metric: ClassVar[str]  # the challenge's primary metric, as named in the metrics dict
    mode: ClassVar[str]  # "max" or "min" for `metric`
    default_config: ClassVar[dict[str, Any]]
    fit_splits: ClassVar[tuple[str, ...]] = ("train", "val")
    submit_split: ClassVar[str] = "test"
    format_name: ClassVar[str | None] = None  # another task's data format (a second method), else the task's own
    # (folder under the data root, converter options): `facelab demo` converts a few real faces when the
    # data root holds that folder, instead of taking `demo_data`'s synthetic set
    demo_conversion: ClassVar[tuple[str, dict[str, Any]] | None] = None

    # Serve: the JSON body of `POST /<name>` and how it becomes rows for the predictor.
    Request: ClassVar[type[BaseModel]]

    @property
    def format(self) -> Format:
        return get_format(self.format_name or self.name)

    def read_for_fit(self, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
        return {split: self.format.read(data, split, skip_bad=skip_bad) for split in self.fit_splits}

    @abstractmethod
    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """Fit the final model from `config`, write it into `model_dir`, return its metrics."""

    @abstractmethod
    def evaluate_config(self, config: dict, data: Any) -> dict[str, float]:
        """One Tune trial: an honest estimate (e.g. CV) of `config`'s metrics on `data`."""

    def trial_data(self, data: dict[str, Read]) -> Any:
        """What every Tune trial receives (put in the object store once per sweep)."""
        return data

    # The batch predictor: `predictor_class(model_dir)` then `instance(batch) -> batch`.
    predictor_class: ClassVar[type]

    def request_rows(self, request: BaseModel) -> tuple[list[dict], bool]:
        """Rows for the predictor from a validated request, and whether it was a batch."""
        raise NotImplementedError

    def response(self, outputs: list[dict], batched: bool) -> dict:
        return {"predictions": outputs} if batched else outputs[0]

    def demo_data(self, out: Path) -> Path:
        """A small data set for `facelab demo` in the task's layout: synthetic by default; face tasks
        that need real faces override it with a small conversion from the data root."""
        return self.format.synthesize(Path(out), seed=0)

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        """A valid and a malformed `POST /<name>` body made from the data folder (for the demo)."""
        raise NotImplementedError

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """Predictions in the columns the format's submission writer takes."""
        return predictions
