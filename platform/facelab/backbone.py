"""Starting an image task from a facelab face backbone (issue 23).

The `backbone` task (facelab.tasks.backbone) pretrains one ResNet-18 trunk on every labelled face
the project has. An image task whose config has the `StartsFromBackbone` keys takes
`backbone: <run id | "promoted">`:

- in the driver, `pin` resolves the name to one stored run (so a later promotion changes nothing
  for a run already started), checks that the task's `width` is the backbone's, and reads the
  trunk's weights; the run's config and its manifest record the backbone run id;
- in every Train worker, `load_trunk` copies those weights into each ResNet of the task's model
  (the task's own output layer stays new) before training, or before a checkpoint replaces them
  on resume; with `freeze_backbone` only the rest of the model trains (a feature extractor, for
  data sets of a few hundred images).
"""

from __future__ import annotations

import json
from typing import Any

from facelab.errors import FacelabError

BACKBONE_TASK = "backbone"
TRUNK_PREFIX = "trunk."  # the backbone model's state-dict keys of its ResNet trunk


def trunk_weights(model_dir) -> dict:
    """The trunk's state dict (no output layer) of a stored backbone model folder."""
    from pathlib import Path

    import torch

    from facelab.torch_train import MODEL_FILE

    state = torch.load(Path(model_dir) / MODEL_FILE, map_location="cpu", weights_only=True)
    trunk = {k[len(TRUNK_PREFIX):]: v for k, v in state.items() if k.startswith(TRUNK_PREFIX)}
    if not trunk:
        raise FacelabError(f"{model_dir}: not a backbone model (no '{TRUNK_PREFIX}*' weights)")
    return trunk


def pin(task_name: str, config: dict, store) -> tuple[dict, dict | None]:
    """(config with `backbone` pinned to a run id, the trunk's weights), or (config, None) when
    the config names no backbone. A FacelabError names what does not fit."""
    from facelab.torch_train import CONFIG_FILE

    spec = config.get("backbone")
    if not spec:
        return config, None
    run_id = store.promoted(BACKBONE_TASK) if spec == "promoted" else str(spec)
    run = store.load(BACKBONE_TASK, run_id)
    backbone_config = json.loads((run.model_dir / CONFIG_FILE).read_text())
    if int(config["width"]) != int(backbone_config["width"]):
        raise FacelabError(f"task '{task_name}' config: width {config['width']} but backbone run {run_id} has width "
                           f"{backbone_config['width']}: set width to {backbone_config['width']}")
    return {**config, "backbone": run_id}, trunk_weights(run.model_dir)


def resnets(model) -> list[Any]:
    """Every torchvision ResNet inside `model` (the trunks a backbone's weights go into)."""
    from torchvision.models import ResNet

    return [m for m in model.modules() if isinstance(m, ResNet)]


def load_trunk(model, trunk: dict, *, freeze: bool = False) -> None:
    """Copy the backbone `trunk` into every ResNet of `model`, all layers but the output one
    (`fc`); with `freeze`, those layers no longer train (no gradients, BatchNorm statistics
    kept)."""
    import torch

    nets = resnets(model)
    if not nets:
        raise FacelabError(f"{type(model).__name__} has no ResNet trunk to start from a backbone")
    for net in nets:
        missing, unexpected = net.load_state_dict(trunk, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise FacelabError(f"the backbone does not fit {type(model).__name__}: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        if not freeze:
            continue
        for name, module in net.named_children():
            if name == "fc":
                continue
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            for norm in module.modules():
                if isinstance(norm, torch.nn.BatchNorm2d):
                    norm.momentum = 0.0  # running statistics stay the backbone's
