"""How the aggregator is trained: the seed's double-margin contrastive loss and the
`TorchRecipe` that runs it through Ray Train (`facelab.torch_train.fit_torch`).

The recipe is built with the data (`TrackData`) for training; bare for loading a model folder
(the PCA then comes from the saved weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facelab.aggregator.network import build_aggregator, load_torch, pad_tracks
from facelab.torch_train import TorchRecipe

if TYPE_CHECKING:
    from facelab.aggregator.data import TrackData


def contrastive_loss(outputs, references, same, config: dict):
    """The seed's double-margin contrastive loss over every (track, reference) pair of a batch:
    mean(relu(d_pos - tp)) + neg_weight * mean(relu(tn - d_neg)), tp/tn = centre * (1 -/+ margin).
    Distances come from cosine similarities (einsum), as the seed does to save memory."""
    torch = load_torch()
    cosine = torch.einsum("bd,md->bm", outputs, references)
    distance = torch.sqrt((2 - 2 * cosine).clamp_min(1e-8))
    centre, margin = float(config["centre"]), float(config["margin"])
    zero = distance.new_zeros(())
    positive = torch.relu(distance[same] - centre * (1 - margin)).mean() if same.any() else zero
    negative = torch.relu(centre * (1 + margin) - distance[~same]).mean() if (~same).any() else zero
    return positive + float(config["neg_weight"]) * negative


class TrackRecipe(TorchRecipe):
    """The aggregator as a TorchRecipe. Built with the data (`TrackData`) for training; bare
    for loading a model folder (the PCA then comes from the saved weights)."""

    def __init__(self, data: TrackData | None = None):
        self.data = data

    def build_model(self, config: dict):
        load_torch().manual_seed(int(config["seed"]))
        model = build_aggregator(config)
        if self.data is not None:
            self.data.initialise(model, config)
        return model

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        rng = np.random.default_rng() if train else None
        frames, mask = pad_tracks(list(batch["frames"]), int(config["max_frames"]), rng)
        index = self.data.person_index
        return {"frames": frames, "mask": mask,
                "person": np.array([index.get(p, -1) for p in batch["person_id"]], np.int64)}

    def loss(self, model, batch: dict, config: dict):
        torch = load_torch()
        refs = torch.from_numpy(self.data.train_references).to(batch["frames"].device)
        ref_people = torch.from_numpy(self.data.train_reference_people).to(batch["frames"].device)
        outputs = model(batch["frames"], batch["mask"])
        return contrastive_loss(outputs, refs, batch["person"][:, None] == ref_people[None, :], config)

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        outputs, people = [], []
        for batch in batches:
            outputs.append(model(batch["frames"], batch["mask"]).cpu().numpy())
            people.append(batch["person"].cpu().numpy())
        return self.data.val_scores(np.concatenate(outputs), np.concatenate(people), "val_")

    def optimizer(self, model, config: dict):
        return load_torch().optim.Adam(model.parameters(), lr=float(config["lr"]),
                                   weight_decay=float(config["weight_decay"]))

    def scheduler(self, optimizer, config: dict):
        """The seed's schedule: the learning rate divided by `lr_drop` after `lr_drop_epoch` epochs."""
        return load_torch().optim.lr_scheduler.StepLR(optimizer, step_size=int(config["lr_drop_epoch"]),
                                                  gamma=1.0 / float(config["lr_drop"]))
