"""The face backbone (issue 23): pretrained once, started from by the image tasks through their config.

- Every image task with a `backbone` key (age-gender, emotion with `arch: resnet`, occlusion,
  mask-face) builds a model the backbone's trunk loads into, layer for layer; a model without a
  ResNet trunk or of another width is refused with a message that says so.
- `freeze_backbone` trains only what follows the trunk.
- End to end: the contract's backbone fit is promoted; an age-gender fit with `backbone:
  promoted` and a frozen trunk stores a model whose trunk is the backbone's, weight for weight (so
  the weights reached the Ray Train worker), and the run records the backbone run it started from.
- The drawn-occluder objective (`occluder_weight`): each grid target is the covered fraction of
  the pixels the occluder changed, an image without one has zero targets, training batches draw
  new occluders and validation batches the same ones (on a copy, the labelled image kept clean);
  the loss has the occluder term only with a positive weight, a few steps on a tiny model bring
  it below the best constant guess, the head exists only in a model trained with it (so a model
  stored before it loads as it is), and a negative weight is refused.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from facelab.backbone import load_trunk, pin, resnets
from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.tasks.backbone import GRID, BackboneConfig, BackboneNet, BackboneRecipe, draw_occluders

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


# --- the drawn-occluder objective ------------------------------------------------------------

def _smooth_images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Blurry colour fields (4x4 random pixels upscaled): a picture with large flat-ish regions."""
    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (size, size)) for _ in range(n)]


def _cell_fractions(changed: np.ndarray) -> np.ndarray:
    h, w = changed.shape
    return changed.reshape(GRID, h // GRID, GRID, w // GRID).mean((1, 3)).ravel()


def test_occluder_targets_are_the_covered_fraction_of_each_cell():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(24)]  # noise: every fill changes pixels
    copies = [image.copy() for image in images]
    occluded, targets = draw_occluders(images, np.random.default_rng(1), 0.6)
    assert targets.shape == (24, GRID * GRID) and targets.dtype == np.float32
    drawn = targets.sum(1) > 0
    assert 5 < drawn.sum() < 24  # some with an occluder, some without
    for before, after, target, has in zip(images, occluded, targets, drawn):
        changed = (after != before).any(2)
        assert np.allclose(_cell_fractions(changed), target, atol=1e-6)
        assert has == changed.any()  # without an occluder: untouched and all-zero targets
        assert changed.mean() <= 0.3  # each side at most about half the image's
    assert all(np.array_equal(a, b) for a, b in zip(images, copies))  # drawn on copies


def test_occluders_are_new_each_training_batch_and_fixed_for_validation(tmp_path):
    paths = []
    for i, image in enumerate(_smooth_images(8)):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], image)
    batch = {"path": np.array(paths), **{label: np.full(8, -1) for label in ("age", "gender", "race", "emotion")}}
    recipe, task = BackboneRecipe(), get_task("backbone")
    config = task.config({"image_size": 32, "occluder_weight": 1.0, "occluder_p": 1.0})
    first, second = (recipe.prepare(batch, config, train=True) for _ in range(2))
    assert first["occluder"].shape == (8, GRID * GRID) and (first["occluder"].sum(1) > 0).all()
    assert not np.array_equal(first["occluder"], second["occluder"])
    val, again = (recipe.prepare(batch, config, train=False) for _ in range(2))
    assert np.array_equal(val["occluder"], again["occluder"]) and np.array_equal(val["occluded"], again["occluded"])
    clean = recipe.prepare(batch, task.config({"image_size": 32}), train=False)
    assert np.array_equal(val["image"], clean["image"]) and set(clean) == {"image", *batch} - {"path"}
    assert not np.array_equal(val["occluded"], clean["image"])


def _occluder_batch(n: int, seed: int = 1) -> dict:
    occluded, targets = draw_occluders(_smooth_images(n), np.random.default_rng(seed), 1.0)
    none = torch.full((n,), -1)  # no labels: only the occluder term can be nonzero
    return {"image": torch.from_numpy(np.stack(occluded).transpose(0, 3, 1, 2).copy()),
            "occluder": torch.from_numpy(targets), **{label: none for label in ("age", "gender", "race", "emotion")}}


def test_the_loss_has_the_occluder_term_only_with_a_weight():
    task, recipe, batch = get_task("backbone"), BackboneRecipe(), _occluder_batch(8)
    off = task.config({"width": WIDTH, "image_size": 32})
    on = {**off, "occluder_weight": 1.0}
    assert float(recipe.loss(recipe.build_model(off), batch, off).detach()) == 0
    assert not any(k.startswith("occluder.") for k in recipe.build_model(off).state_dict())
    model = recipe.build_model(on)
    loss = recipe.loss(model, batch, on)
    assert float(loss.detach()) == pytest.approx(np.log(2), rel=1e-4)  # the zero-init head says p = 0.5
    loss.backward()
    assert all(p.grad is not None for p in model.parameters()), "every parameter joins the graph (DDP)"
    labelled = {**batch, **{label: torch.zeros(8, dtype=torch.int64) for label in ("age", "gender", "race", "emotion")}}
    with torch.no_grad():
        metrics = recipe.evaluate(model.eval(), [{**labelled, "occluded": batch["image"]}], on)
        assert "occluder_mae" not in recipe.evaluate(recipe.build_model(off).eval(), [labelled], off)
    assert metrics["occluder_mae"] == pytest.approx(float((0.5 - batch["occluder"]).abs().mean()), rel=1e-4)
    assert metrics["mean_accuracy"] == np.mean([v for k, v in metrics.items() if k.endswith("_accuracy")
                                                and k != "mean_accuracy" or k.startswith("age_within")])


def test_a_few_steps_learn_where_the_occluder_is():
    torch.manual_seed(0)
    task, recipe, batch = get_task("backbone"), BackboneRecipe(), _occluder_batch(48)
    config = task.config({"width": WIDTH, "image_size": 32, "dropout": 0.0, "occluder_weight": 1.0})
    model = recipe.build_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        recipe.loss(model, batch, config).backward()
        optimizer.step()
    target = batch["occluder"]
    constant = float(F.binary_cross_entropy(target.mean(0, keepdim=True).expand_as(target), target))
    with torch.no_grad():
        learnt = float(recipe.loss(model, batch, config))
    assert learnt < 0.75 * constant  # better than the best guess that ignores the image


@pytest.mark.parametrize("stored", ["before the objective", "with the objective"])
def test_a_stored_model_loads_with_or_without_the_occluder_head(stored, tmp_path):
    import json

    from facelab.backbone import trunk_weights
    from facelab.tasks.backbone import BackbonePredictor
    from facelab.torch_train import CONFIG_FILE, MODEL_FILE

    config = get_task("backbone").config({"width": WIDTH, "image_size": 32, "occluder_weight": 1.0})
    if stored == "before the objective":  # its config.json has no occluder keys, its weights no head
        config = {k: v for k, v in config.items() if not k.startswith("occluder_")}
    torch.save(BackboneRecipe().build_model(config).state_dict(), tmp_path / MODEL_FILE)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    out = BackbonePredictor(str(tmp_path))({"image": np.stack(_smooth_images(2))})
    assert out["age"].shape == (2,) and not any(k.startswith("occluder") for k in out)
    assert set(trunk_weights(tmp_path)) == set(BackboneNet(WIDTH, 0.0).trunk.state_dict())


def test_a_negative_occluder_weight_is_refused():
    with pytest.raises(ValidationError, match="occluder_weight"):
        BackboneConfig(occluder_weight=-1)
    with pytest.raises(FacelabError, match="occluder_weight"):
        get_task("backbone").config({"occluder_weight": -0.5})
    with pytest.raises(FacelabError, match="occluder_p"):
        get_task("backbone").config({"occluder_p": 1.5})
