"""Fits shared by the model tests: one tiny tuned run per task (`task_fit`), a sentiment model
tuned, refitted and promoted once, and the check of a mask submission."""

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from facelab.formats import get_format


@dataclass(frozen=True)
class TaskFit:
    """A task's shared fit: `workdir` holds `data/`, `store/` and `config.yaml`; `tuned` is what
    `facelab tune` printed."""

    name: str
    workdir: Path
    data: Path  # relative to workdir, as the user gave it
    config: dict
    tuned: dict

    @property
    def data_dir(self) -> Path:
        return self.workdir / self.data

    @property
    def store(self) -> str:
        return str(self.workdir / "store")

    @property
    def run(self):
        from facelab.store import ModelStore
        from facelab.tasks import get_task

        return ModelStore(self.store).load(self.name, check_config=get_task(self.name).config)

    @property
    def run_id(self) -> str:
        return self.tuned["run_id"]

    @property
    def metrics(self) -> dict:
        return self.run.metrics

    def submission(self) -> dict:
        """What `submit` of every row of the fit's data with its promoted run returned, run once
        per session from `workdir` with relative paths (the submission goes to `out/`). The
        contract test checks its lifecycle; the task's own tests score the same file."""
        if self.name not in _SUBMISSIONS:
            from facelab.predict import submit
            from facelab.tasks import get_task

            before = os.getcwd()
            os.chdir(self.workdir)
            try:
                _SUBMISSIONS[self.name] = submit(self.name, self.data, Path("out") / get_task(self.name).format.submission_name,
                                                 "store")
            finally:
                os.chdir(before)
        return _SUBMISSIONS[self.name]


_SUBMISSIONS: dict[str, dict] = {}


def _fit_from_own_folder(name: str, workdir: Path, facelab_cli) -> TaskFit:
    """`facelab tune --samples 1` of the task's case (fit_cases.py) or demo config, from `workdir`
    with relative paths only (Tune trials, Train workers and predictor actors run elsewhere)."""
    from fit_cases import cases
    from jobs.demo import SWEPT, demo_data

    from facelab.config import data_root
    from facelab.errors import RealDataMissing
    from facelab.tasks import get_task

    task, case = get_task(name), cases().get(name)
    if case is None and task.demo_conversion is not None and not (data_root() / task.demo_conversion[0]).is_dir():
        pytest.skip(f"{name} needs real faces: {data_root() / task.demo_conversion[0]} not found")
    before = os.getcwd()
    os.chdir(workdir)
    try:
        if case is not None:
            data, config = case.data(Path("data")), dict(case.config)
        else:
            try:
                data = Path(demo_data(task, Path("data")))  # what `facelab demo` takes: a few real faces where declared
            except RealDataMissing as exc:
                pytest.skip(f"{name} needs real data: {exc}")
            config = SWEPT.get(name) or dict(task.demo_config)  # each task's cheapest config
        data = Path(os.path.relpath(data, workdir)) if data.is_absolute() else data
        Path("config.yaml").write_text(yaml.safe_dump(config))
        tuned = facelab_cli("tune", "--task", name, "--data", str(data), "--store", "store",
                            "--config", "config.yaml", "--samples", "1")
    finally:
        os.chdir(before)
    return TaskFit(name, workdir, data, config, tuned)


@pytest.fixture(scope="session")
def task_fit(ray_local, tmp_path_factory, facelab_cli):
    """task_fit(name) -> TaskFit: the task's one shared fit, made on first use."""
    fits: dict[str, TaskFit] = {}

    def fit(name: str) -> TaskFit:
        if name not in fits:
            fits[name] = _fit_from_own_folder(name, tmp_path_factory.mktemp(f"{name}-fit"), facelab_cli)
        return fits[name]

    return fit


@pytest.fixture(scope="session")
def sentiment_data(tmp_path_factory):
    return get_format("sentiment").synthesize(tmp_path_factory.mktemp("sentiment-data"), n=500, seed=7)


@pytest.fixture(scope="session")
def tuned_sentiment(ray_local, sentiment_data, tmp_path_factory):
    """tune (4 Optuna trials on Ray Tune) -> refit as the CV ensemble -> store -> promote."""
    from tuning.runner import sweep

    store = str(tmp_path_factory.mktemp("sentiment-store"))
    result = sweep("sentiment", sentiment_data, store, samples=4)
    return store, result



@pytest.fixture(scope="session")
def checked_mask_submission():
    """`submit` of a mask method into OUT, checked against the Blitz layout (one row per test image
    in the sample submission's order, known types, boxes inside the 512x512 images), then scored:
    check(task, data, store, out) -> scores."""
    import pandas as pd

    from facelab.formats.mask import MASK_TYPES, parse_bbox
    from facelab.predict import submit

    def check(task: str, data, store: str, out) -> dict:
        summary = submit(task, data, out, store)
        written = pd.read_csv(out)
        expected = pd.read_csv(data / "sample_submission.csv")["ImageID"]
        assert summary["rows"] == len(expected) and list(written["ImageID"]) == list(expected)
        assert set(written["masktype"]) <= set(MASK_TYPES)
        for text in written["bbox"]:
            x0, y0, x1, y1 = parse_bbox(text)
            assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
        return get_format("mask").score(out, data / "test_truth.csv")

    return check
