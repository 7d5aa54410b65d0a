"""The face backbone (issue 23): pretrained once, started from by the image tasks through their config.

- Every image task with a `backbone` key (age-gender, emotion with `arch: resnet`, occlusion,
  mask-face) builds a model the backbone's trunk loads into, layer for layer; a model without a
  ResNet trunk or of another width is refused with a message that says so.
- `freeze_backbone` trains only what follows the trunk.
- End to end: the contract's backbone fit is promoted; an age-gender fit with `backbone:
  promoted` and a frozen trunk stores a model whose trunk is the backbone's, weight for weight (so
  the weights reached the Ray Train worker), and the run records the backbone run it started from.
"""

from __future__ import annotations

import pytest
import torch

from facelab.backbone import load_trunk, pin, resnets
from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.tasks.backbone import BackboneNet

WIDTH = 8
STARTS = {  # each task that starts from a backbone, at the backbone's width
    "age-gender": {"width": WIDTH},
    "emotion": {"arch": "resnet", "width": WIDTH},
    "occlusion": {"width": WIDTH, "ensemble": True},
    "mask-face": {"width": WIDTH},
}


def _trunk_state(net) -> dict:
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}


@pytest.fixture(scope="module")
def backbone_trunk():
    torch.manual_seed(0)
    net = BackboneNet(WIDTH, 0.0)
    for p in net.trunk.parameters():  # not the random init a task would draw anyway
        p.data.normal_()
    return {k: v for k, v in net.trunk.state_dict().items()}


def _model(task_name: str, overrides: dict):
    task = get_task(task_name)
    config = task.config({**task.demo_config, **overrides, "backbone": "some-run"})
    if task_name == "mask-face":  # its recipe and config's labels come from the data (trainer_inputs)
        recipe, config = task.trainer_inputs(config, {"labels": ["cloth", "N95"]})
        return recipe.build_model(config)
    return task.recipe.build_model(config)


@pytest.mark.parametrize("task_name", sorted(STARTS))
def test_every_starting_task_takes_the_trunk(task_name, backbone_trunk):
    model = _model(task_name, STARTS[task_name])
    nets = resnets(model)
    assert nets, f"{task_name}: no ResNet trunk"
    load_trunk(model, backbone_trunk)
    for net in nets:
        state = _trunk_state(net)
        assert state and all(torch.equal(v, backbone_trunk[k]) for k, v in state.items())


def test_the_config_key_is_refused_where_it_cannot_work():
    with pytest.raises(FacelabError, match="set arch: resnet"):
        get_task("emotion").config({"backbone": "promoted"})  # the VGG layout has no ResNet trunk
    with pytest.raises(FacelabError, match="unknown key 'backbone'"):
        get_task("deblur").config({"backbone": "promoted"})
    with pytest.raises(FacelabError, match="no ResNet trunk"):
        load_trunk(get_task("emotion").recipe.build_model(get_task("emotion").config()), {})
    other = BackboneNet(WIDTH * 2, 0.0).trunk.state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_trunk(_model("age-gender", {"width": WIDTH}), other)


def test_a_frozen_trunk_does_not_train(backbone_trunk):
    model = _model("age-gender", {"width": WIDTH})
    load_trunk(model, backbone_trunk, freeze=True)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    heads_before = model.gender.weight.detach().clone()
    out = model(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    (out["age"].sum() + out["gender"].sum()).backward()
    optimizer.step()
    assert all(torch.equal(v, backbone_trunk[k]) for k, v in _trunk_state(model.trunk).items())
    assert not torch.equal(model.gender.weight, heads_before)


def test_pin_resolves_promoted_and_checks_the_width(task_fit):
    fit = task_fit("backbone")
    store = ModelStore(fit.store)
    config = get_task("age-gender").config({"backbone": "promoted", "width": fit.config["width"]})
    pinned, trunk = pin("age-gender", config, store)
    assert pinned["backbone"] == store.promoted("backbone") == fit.run_id and "conv1.weight" in trunk
    with pytest.raises(FacelabError, match=f"set width to {fit.config['width']}"):
        pin("age-gender", {**config, "width": fit.config["width"] + 1}, store)
    with pytest.raises(FacelabError):
        pin("age-gender", {**config, "backbone": "no-such-run"}, store)


def test_a_task_trained_from_the_backbone_starts_from_its_trunk(task_fit, tmp_path):
    from facelab.backbone import trunk_weights
    from facelab.train import train

    fit = task_fit("backbone")
    data = get_format("age-gender").synthesize(tmp_path / "faces", n=40, seed=3)
    config = {"epochs": 1, "image_size": 48, "width": fit.config["width"], "batch_size": 16,
              "backbone": "promoted", "freeze_backbone": True}
    run_id, metrics = train("age-gender", data, fit.store, config=config)
    assert metrics["age_mae"] > 0
    run = ModelStore(fit.store).load("age-gender", run_id)
    assert run.manifest["backbone"] == fit.run_id and run.config["backbone"] == fit.run_id
    stored = torch.load(run.model_dir / "model.pt", weights_only=True)
    trunk = trunk_weights(ModelStore(fit.store).load("backbone", fit.run_id).model_dir)
    same = [torch.equal(stored[f"trunk.{k}"], v) for k, v in trunk.items() if "num_batches" not in k]
    assert same and all(same), "the frozen trunk is not the backbone's"


def test_fusion_appends_the_trunk_features_and_the_fairface_task_reads_the_copy(task_fit, ray_local, tmp_path):
    """`facelab data fuse`: a FairFace-layout folder whose embeddings get the backbone trunk's
    unit-length features of each row's image appended; the original values and rows are kept, the
    run id is recorded, and the fairface reader takes the copy. A missing image is named."""
    import json

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from facelab.fusion import EMBEDDINGS, FUSION_FILE, TrunkFeatures, fuse_backbone_features

    fit = task_fit("backbone")
    root = tmp_path / "root"
    faces = get_format("age-gender").synthesize(root / "utkface", n=24, seed=5)
    labels = pd.read_csv(faces / "labels.csv")
    files = [f"utkface/{f}" for f in labels["file"]]
    folder = tmp_path / "ff"
    folder.mkdir()
    rows = pd.DataFrame({"file": files, "age": "20-29", "gender": np.where(labels["gender"] == 1, "Female", "Male"),
                         "race": "White", "service_test": False})
    rows.iloc[:16].to_csv(folder / "fairface_label_train.csv", index=False)
    rows.iloc[16:20].to_csv(folder / "fairface_label_val.csv", index=False)
    rows.iloc[20:][["file"]].to_csv(folder / "fairface_label_test.csv", index=False)
    dlib = np.random.default_rng(0).normal(0, 0.1, (len(files), 256)).astype(np.float32)
    pq.write_table(pa.table({"file": files, "embedding": list(dlib)}), folder / EMBEDDINGS)

    store = ModelStore(fit.store)
    written = fuse_backbone_features(folder, tmp_path / "fused", store, "promoted", root)
    fused = pq.read_table(tmp_path / "fused" / EMBEDDINGS).to_pandas()
    width = 8 * int(fit.config["width"])
    assert fused["file"].tolist() == files and written["dims"] == {"embedding": 256, "backbone_features": width}
    matrix = np.stack(fused["embedding"].to_numpy())
    assert matrix.shape == (len(files), 256 + width) and np.array_equal(matrix[:, :256], dlib)
    assert np.allclose(np.linalg.norm(matrix[:, 256:], axis=1), 1, atol=1e-5)
    model_dir = store.load("backbone", fit.run_id).model_dir
    again = TrunkFeatures(str(model_dir))({"path": np.array([str(root / files[3])])})["features"][0]
    assert np.allclose(matrix[3, 256:], again, atol=1e-5)  # each row's own image
    assert json.loads((tmp_path / "fused" / FUSION_FILE).read_text())["backbone"] == fit.run_id
    read = get_format("fairface").read(tmp_path / "fused", "train")
    assert read.dataset.count() == 16 and len(read.dataset.take(1)[0]["embedding"]) == 256 + width

    (root / files[5]).unlink()
    with pytest.raises(FacelabError, match=rf"{files[5]}: image not found \(1 of 24 missing"):
        fuse_backbone_features(folder, tmp_path / "fused2", store, "promoted", root)
