"""The shared Ray Train mechanism (facelab.torch_train) on CPU with 2 workers: it learns,
survives a killed worker by resuming from its latest checkpoint, and resumes a rerun. In
`make test-cluster` with the other tests that kill Ray processes (a Train worker dies here and its
group restarts: about two minutes of Ray start-ups, not of training)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from facelab.torch_train import TorchRecipe, fit_torch, load_model

torch = pytest.importorskip("torch")

# Train workers cannot import test modules: ship this module's recipes by value.
import ray.cloudpickle

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class LineRecipe(TorchRecipe):
    """Learn y = 3x - 1 with one linear unit; every validation pass is logged to a file."""

    def build_model(self, config):
        torch.manual_seed(0)
        return torch.nn.Linear(1, 1)

    def prepare(self, batch, config, train):
        x = batch["x"].astype(np.float32)[:, None]
        return {"x": x, "y": 3 * x - 1, "name": batch["name"]}  # "name" (text) is dropped by the mechanism

    def loss(self, model, batch, config):
        return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])

    def evaluate(self, model, batches, config):
        errors = [((model(b["x"]) - b["y"]) ** 2).flatten() for b in batches]
        with open(Path(config["log_dir"]) / "evaluations.txt", "a") as fh:
            fh.write("1\n")
        return {"val_mse": float(torch.cat(errors).mean())}


class KilledWorkerRecipe(LineRecipe):
    """Worker rank 1 dies (os._exit) in epoch 3 of the first attempt, once epoch 2's
    checkpoint is registered; a marker file keeps the restarted attempt alive."""

    def loss(self, model, batch, config):
        import ray.train

        log = Path(config["log_dir"])
        marker = log / "killed"
        if (ray.train.get_context().get_world_rank() == 1 and not marker.exists()
                and len(evaluations(log)) >= 2):
            ray.train.get_all_reported_checkpoints()  # blocks until epoch 2's checkpoint is registered
            marker.write_text("killed in epoch 3")
            os._exit(1)
        return super().loss(model, batch, config)


def evaluations(log: Path) -> list[str]:
    path = Path(log) / "evaluations.txt"
    return path.read_text().split() if path.exists() else []


def line_data(ray, n: int, seed: int):
    rng = np.random.default_rng(seed)
    return ray.data.from_items([{"x": float(v), "name": f"row{i}"} for i, v in enumerate(rng.uniform(-1, 1, n))])


@pytest.fixture(scope="module")
def datasets(ray_local):
    return {"train": line_data(ray_local, 256, 0), "val": line_data(ray_local, 64, 1)}


def config_for(folder: Path, epochs: int) -> dict:
    log = folder / "log"
    log.mkdir(exist_ok=True)
    return {"epochs": epochs, "batch_size": 16, "lr": 0.1, "weight_decay": 0.0, "log_dir": str(log)}


def fit(recipe, config, datasets, folder: Path):
    """2 CPU workers (DDP over gloo), half a CPU each; checkpoints under `folder`/runs."""
    return fit_torch(recipe, config, datasets, folder / "model", metric="val_mse", mode="min", name="line",
                     storage_path=str(folder / "runs"), num_workers=2, use_gpu=False, cpus_per_worker=0.5)


@pytest.fixture(scope="module")
def killed_run(datasets, tmp_path_factory):
    """3 epochs on 2 workers; worker rank 1 dies in epoch 3 and the group restarts."""
    folder = tmp_path_factory.mktemp("torch-train")
    best = fit(KilledWorkerRecipe(), config_for(folder, 3), datasets, folder)
    return folder, best


def test_two_workers_learn(killed_run):
    folder, best = killed_run
    model_dir = folder / "model"
    history = pd.read_csv(model_dir / "history.csv")
    assert history["val_mse"].iloc[-1] < history["val_mse"].iloc[0] / 2
    assert best["val_mse"] == pytest.approx(history["val_mse"].min())
    assert {"model.pt", "config.json", "history.csv", "history.png"} <= {p.name for p in model_dir.iterdir()}
    assert json.loads((model_dir / "config.json").read_text())["epochs"] == 3

    x = torch.from_numpy(np.linspace(-1, 1, 9, dtype=np.float32)[:, None])
    with torch.no_grad():
        trained = float(((load_model(LineRecipe(), model_dir, "cpu")(x) - (3 * x - 1)) ** 2).mean())
        untrained = float(((LineRecipe().build_model({})(x) - (3 * x - 1)) ** 2).mean())
    assert trained < untrained / 2


def test_a_killed_worker_resumes_from_the_latest_checkpoint(killed_run):
    folder, _ = killed_run
    assert (folder / "log" / "killed").exists()  # the worker really died
    assert list(pd.read_csv(folder / "model" / "history.csv")["epoch"]) == [1, 2, 3]
    # resumed after epoch 2, not from scratch: 3 validations in all, none repeated
    assert len(evaluations(folder / "log")) == 3


def test_a_rerun_with_the_same_name_resumes(killed_run, datasets):
    folder, _ = killed_run
    fit(LineRecipe(), config_for(folder, 5), datasets, folder)  # 5 epochs now: only 4 and 5 are new
    history = pd.read_csv(folder / "model" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    assert len(evaluations(folder / "log")) == 5


def test_a_stopped_trials_worker_group_is_released(ray_local):
    """A worker group (placement group) whose Train controller was killed with its Tune trial is
    freed by the sweep's callback when the trial ends, from the id its results carried; a group
    that is gone already is left alone."""
    from types import SimpleNamespace

    from facelab.tasks.torch_task import ReleaseWorkerGroups
    from facelab.torch_train import WORKER_GROUP, release_worker_group
    from ray.util.placement_group import PlacementGroup, placement_group_table

    @ray_local.remote(num_cpus=0)
    class Controller:
        def start(self) -> str:
            from ray.util.placement_group import placement_group

            group = placement_group([{"CPU": 0.5}])
            ray_local.get(group.ready())
            return group.id.hex()

    controller = Controller.remote()
    made = ray_local.get(controller.start.remote())
    callback, trial = ReleaseWorkerGroups(), SimpleNamespace(trial_id="t1")
    callback.on_trial_result(1, [], trial, {"epoch": 1, WORKER_GROUP: made})
    ray_local.kill(controller)  # the trial stopped: its controller is gone, its group is not
    group = PlacementGroup(ray_local.PlacementGroupID(bytes.fromhex(made)))
    state = lambda: placement_group_table(group)["state"]  # noqa: E731
    assert state() == "CREATED"
    callback.on_trial_complete(2, [], trial)
    assert state() == "REMOVED" and callback.groups == {}
    assert release_worker_group(made) is False  # gone already: nothing to do
