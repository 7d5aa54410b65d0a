"""A torch fit is seeded by its config's `seed`: the same seed gives the same initial weights and
the same random draws in training, whatever ran in the (reused) Train worker process before."""

import sys

import numpy as np
import pytest
import ray.cloudpickle
import torch

from facelab.torch_train import TorchRecipe, fit_torch, seed_everything

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Train workers cannot import tests


class DrawsRecipe(TorchRecipe):
    """One linear unit; validation reports its initial weight and training's mean random draw."""

    def build_model(self, config):
        model = torch.nn.Linear(1, 1)
        model.register_buffer("initial", model.weight.detach().clone())
        return model

    def prepare(self, batch, config, train):
        return {"x": batch["x"].astype(np.float32)[:, None]}

    def train_step(self, model, batch, optimizer, config):
        optimizer.zero_grad()
        loss = (model(batch["x"]) ** 2).mean()
        loss.backward()
        optimizer.step()
        return {"train_loss": float(loss), "draw": float(torch.rand(1))}  # what dropout or GAN noise draws

    def evaluate(self, model, batches, config):
        return {"initial_weight": float(model.initial), "val_loss": 0.0}


@pytest.fixture(scope="module")
def data(ray_local):
    return {split: ray_local.data.from_items([{"x": float(v)} for v in np.linspace(-1, 1, 32)])
            for split in ("train", "val")}


def _fit(data, tmp_path, name: str, seed: int) -> dict:
    return fit_torch(DrawsRecipe(), {"epochs": 1, "batch_size": 8, "seed": seed}, data, None, metric="val_loss",
                     mode="min", name=name, storage_path=str(tmp_path), num_workers=1, use_gpu=False,
                     cpus_per_worker=1)


def test_the_same_seed_gives_the_same_weights_and_draws(data, tmp_path):
    first, again = _fit(data, tmp_path, "first", 5), _fit(data, tmp_path, "again", 5)
    seed_everything(5)
    assert first["initial_weight"] == again["initial_weight"] == float(DrawsRecipe().build_model({}).weight)
    assert again["draw"] == first["draw"]
