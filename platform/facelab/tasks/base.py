"""The task contract: everything jobs, tuning and serve need from a task, declared in one place.

A task names its data format (and the converter that builds it from real faces), its typed
config model, its search space, its metric, its Serve request and response models and its demo
data; it fits a model folder from a config, runs a Tune trial of one config, reports on its
validation predictions, and supplies a batch predictor: a callable class built from a model
folder that maps a batch (dict of numpy arrays) to predictions, used unchanged by
`Dataset.map_batches` in batch jobs and inside the Serve deployment.

Every optional hook is declared here with its default, so callers never probe with `hasattr`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel

from facelab.answers import one_or_batch
from facelab.errors import BadRow
from facelab.formats import Format, Read, get_format
from facelab.task_config import TaskConfig, check_keys, validated


class Task(ABC):
    # --- what the task is -------------------------------------------------------------------
    name: ClassVar[str]
    reference: ClassVar[str]  # the reference system it reproduces (which seed, which section)
    metric: ClassVar[str]  # the primary metric, as named in the metrics dict
    mode: ClassVar[str]  # "max" or "min" for `metric`
    Config: ClassVar[type[TaskConfig]]  # the typed config: defaults and a description of every key
    demo_config: ClassVar[dict[str, Any]] = {}  # overrides for the demo and CPU smoke runs (keys of Config)

    # --- data --------------------------------------------------------------------------------
    format_name: ClassVar[str | None] = None  # another task's data format (a second method), else the task's own
    converters: ClassVar[tuple[str, ...]] = ()  # `facelab data convert` names that build the layout from real faces
    # (folder under the data root, converter options): `facelab demo` converts a few real faces when the
    # data root holds that folder, instead of taking `demo_data`'s synthetic set
    demo_conversion: ClassVar[tuple[str, dict[str, Any]] | None] = None
    fit_splits: ClassVar[tuple[str, ...]] = ("train", "val")
    submit_split: ClassVar[str] = "test"
    report_split: ClassVar[str | None] = None  # predicted once after every fit and handed to `report`

    # --- tuning ------------------------------------------------------------------------------
    search_space: ClassVar[str | None] = None  # module of the search space; default tuning.spaces.<name>
    reports_per_epoch: ClassVar[bool] = False  # trials report every epoch with checkpoints (ASHA stops them;
    # the winner is the best trial's own checkpoint, adopted by `fit_from_trial` instead of a refit)

    # --- serving and batch prediction ----------------------------------------------------------
    Request: ClassVar[type[BaseModel]]  # the body of `POST /<name>`
    Answer: ClassVar[type[BaseModel] | None] = None  # one prediction's JSON answer; None for a binary one (a PNG)
    actions: ClassVar[dict[str, type[BaseModel]]] = {}  # extra routes `POST /<name>/<action>` and their bodies
    predictor_class: ClassVar[type]  # `predictor_class(model_dir)` then `instance(batch) -> batch`
    predict_batch_size: ClassVar[int | None] = None  # rows per predictor call when rows are heavy
    predict_on_gpu: ClassVar[bool] = False  # batch predictor actors take a GPU when the cluster has one

    # --- config ------------------------------------------------------------------------------
    @property
    def format(self) -> Format:
        return get_format(self.format_name or self.name)

    @property
    def default_config(self) -> dict[str, Any]:
        return self.Config().model_dump()

    def config(self, overrides: dict[str, Any] | None = None, *, source: str = "config") -> dict[str, Any]:
        """The full config: defaults updated by `overrides`; an unknown or ill-typed key is an
        error naming it, the task and the valid keys."""
        return validated(self.name, self.Config, overrides, source=source)

    def check_keys(self, values: dict[str, Any], *, source: str) -> dict[str, Any]:
        """`values` (a partial config) checked against the config model, defaults not filled in."""
        return check_keys(self.name, self.Config, values, source=source)

    @property
    def space_module(self) -> str:
        return self.search_space or f"tuning.spaces.{self.name.replace('-', '_')}"

    # --- fitting -----------------------------------------------------------------------------
    def read_for_fit(self, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
        return {split: self.format.read(data, split, skip_bad=skip_bad) for split in self.fit_splits}

    @abstractmethod
    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """Fit the final model from `config`, write it into `model_dir`, return its metrics."""

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame | None) -> dict[str, float]:
        """After every fit: more metrics, slices and plots for the model folder. `predictions` is
        `report_split` predicted once by the stored model, joined with that split's rows (the
        predictor's columns suffixed `_pred` where names clash), or None without a report_split."""
        return metrics

    def fit_from_trial(self, result, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """For `reports_per_epoch` tasks: a finished trial's best checkpoint as the model folder."""
        raise NotImplementedError(f"task '{self.name}' refits its sweep's winner")

    # --- Tune: tuning.runner.trial is the one trial function; it calls run_trial ----------------
    def trial_data(self, data: dict[str, Read]) -> Any:
        """What every Tune trial receives (put in the object store once per sweep)."""
        return data

    def evaluate_config(self, config: dict, data: Any) -> dict[str, float]:
        """An honest estimate (e.g. CV) of `config`'s metrics on `trial_data`, for one-shot trials."""
        raise NotImplementedError(f"task '{self.name}' is tuned per epoch, not through evaluate_config")

    def run_trial(self, config: dict, trial_data: Any, **options) -> None:
        """One Tune trial (runs in a Ray worker): by default one `evaluate_config`, reported once."""
        from ray import tune

        tune.report(self.evaluate_config(config, trial_data))

    def tune_concurrency(self) -> int | None:
        """Trials at once (None: as many as the trial resources allow)."""
        return None

    def trial_resources(self, trials: int | None) -> dict[str, float]:
        """What each trial's function reserves, when `trials` run at once."""
        return {"cpu": 1}

    def trial_options(self, trials: int | None) -> dict[str, Any]:
        """Extra keyword arguments for `run_trial`, sized for `trials` at once."""
        return {}

    def tune_run_config(self, name: str, storage: str, **kwargs):
        """The sweep's `tune.RunConfig` (checkpoint policy, callbacks)."""
        from ray import tune

        return tune.RunConfig(name=name, storage_path=storage, **kwargs)

    # --- serving -----------------------------------------------------------------------------
    def request_rows(self, request: BaseModel) -> tuple[list[dict], bool]:
        """Rows for the predictor from a validated request, and whether it was a batch."""
        raise NotImplementedError(f"task '{self.name}' declares no request rows")

    @property
    def Response(self) -> type[BaseModel] | None:  # noqa: N802 (a model class, named like Request)
        """The route's JSON response: one `Answer`, or `{"predictions": [...]}` for a batch."""
        return one_or_batch(self.Answer) if self.Answer else None

    def answer(self, output: dict) -> dict:
        """One predictor output row as its JSON answer (an `Answer`)."""
        return output

    def response(self, outputs: list[dict], batched: bool) -> dict:
        shaped = [self.answer(o) for o in outputs]
        return {"predictions": shaped} if batched else shaped[0]

    # --- demo and submissions ------------------------------------------------------------------
    def demo_data(self, out: Path) -> Path:
        """A small data set for `facelab demo` in the task's layout: synthetic by default; face tasks
        that need real faces override it with a small conversion from the data root."""
        return self.format.synthesize(Path(out), seed=0)

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        """A valid and a malformed `POST /<name>` body made from the data folder."""
        raise NotImplementedError(f"task '{self.name}' declares no demo requests")

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """Predictions in the columns the format's submission writer takes."""
        return predictions

    def fallback_rows(self, predictions: pd.DataFrame) -> list[BadRow]:
        """The predicted rows answered by the task's documented fallback rather than by the model
        (verify: no face found in an image): they stay in the submission and `submit` names each
        one in the side file. Rows come with `_file` and `_row` when the format reads them."""
        return []
