"""mediapipe's mesh as expression geometry (facelab.fusion, issue 23 part 2; measured by
scripts/emotion_mesh_fusion.py).

- `mesh_geometry` keeps the shape of the contours and drops pose: a mesh moved, turned in the
  image plane and scaled gives the same geometry; an opened mouth gives another.
- `MeshGeometry` meshes a real FER-2013 face (48 px, upscaled) and gives NaN for a picture
  without a face, so the experts can tell a missing mesh from a face.
"""

from __future__ import annotations

import numpy as np
import pytest

from facelab.fusion import MeshGeometry, mesh_geometry
from facelab.tasks.crowd import contour_points

LIPS = [13, 14, 78, 308]  # mesh points of the inner lips


def _turned(mesh: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    moved = mesh.copy()
    moved[:, :2] = scale * mesh[:, :2] @ np.array([[cos, -sin], [sin, cos]]).T + np.array(shift)
    return moved


def test_geometry_drops_pose_and_scale_but_keeps_the_shape():
    mesh = np.random.default_rng(0).uniform(0, 100, (468, 3)).astype(np.float64)
    geometry = mesh_geometry(mesh)
    assert geometry.shape == (2 * len(contour_points()),) and np.isfinite(geometry).all()
    np.testing.assert_allclose(mesh_geometry(_turned(mesh, 0.4, 2.5, (30.0, -12.0))), geometry, atol=1e-5)
    opened = mesh.copy()
    opened[LIPS[1], 1] += 20.0
    assert np.abs(mesh_geometry(opened) - geometry).max() > 0.05


def test_a_real_face_is_meshed_and_a_blank_picture_is_not(data_root, tmp_path):
    from PIL import Image

    faces = sorted((data_root / "fer2013" / "test" / "happy").glob("*.jpg"))
    if not faces:
        pytest.skip(f"no FER-2013 test faces under {data_root / 'fer2013'}")
    blank = tmp_path / "blank.png"
    Image.new("L", (48, 48), 128).save(blank)
    out = MeshGeometry()({"path": np.array([str(f) for f in faces[:5]] + [str(blank)]), "_row": np.arange(6)})
    geometry = out["geometry"]
    assert geometry.shape == (6, 2 * len(contour_points()))
    assert np.isfinite(geometry[:5]).all(axis=1).sum() >= 3, "mediapipe meshed fewer than 3 of 5 real faces"
    assert np.isnan(geometry[5]).all()
    assert list(out["_row"]) == list(range(6))


def test_the_mesh_expert_adds_what_the_classifier_misses():
    """Synthetic experts: the classifier tells classes 0-2 apart only, the geometry 3-5 only (and
    has missing rows); fused, the stored-and-reloaded fusion beats either alone on held-out rows."""
    from facelab.fusion import MeshFusion

    rng = np.random.default_rng(0)

    def rows(n):
        y = rng.integers(0, 6, n)
        probs = np.full((n, 6), 0.1)
        probs[np.arange(n), np.where(y < 3, y, 3)] = 0.5  # 3-5 all look like 3
        probs /= probs.sum(1, keepdims=True)
        geometry = rng.normal(0, 1, (n, 20)).astype(np.float32)
        geometry[:, 0] += 3.0 * np.where(y >= 3, y - 2, 0)  # 0-2 all look alike
        geometry[rng.random(n) < 0.1] = np.nan
        return probs, geometry, y

    _, train_geometry, train_y = rows(600)
    val_probs, val_geometry, val_y = rows(300)
    test_probs, test_geometry, test_y = rows(300)
    fusion = MeshFusion.fit(train_geometry, train_y, val_probs, val_geometry, val_y)
    fused = fusion.predict_proba(test_probs, test_geometry)
    assert fused.shape == (300, 6) and np.allclose(fused.sum(1), 1)
    accuracy = {"classifier": (test_probs.argmax(1) == test_y).mean(),
                "mesh": (fusion.expert_probs(test_geometry).argmax(1) == test_y).mean(),
                "fused": (fused.argmax(1) == test_y).mean()}
    assert accuracy["fused"] > max(accuracy["classifier"], accuracy["mesh"]) + 0.1, accuracy
    assert 0 < fusion.info["head_cv_accuracy"] <= 1


def test_fuse_mesh_stores_a_run_whose_predictor_fuses(task_fit, data_root, tmp_path):
    """`facelab fuse-mesh` on real FER-2013 faces (a small copy) with the suite's emotion fit:
    a new unpromoted run holding the CNN and the fusion, recording the run it fused; its batch
    predictor answers the fused probabilities, also for an `image` row (the Serve path)."""
    import shutil

    import pandas as pd

    from facelab.formats.fer import EMOTIONS
    from facelab.fusion import MESH_HEAD, MeshFusion, MeshGeometry, fuse_mesh
    from facelab.store import ModelStore
    from facelab.tasks import get_task
    from facelab.vision import load_image

    source = data_root / "fer2013"
    if not (source / "labels.csv").is_file():
        pytest.skip(f"FER-2013 not found at {source}")
    labels = pd.read_csv(source / "labels.csv")
    small = pd.concat([labels[labels["Usage"] == usage].groupby("emotion_name").head(n)
                       for usage, n in (("Training", 8), ("PublicTest", 6), ("PrivateTest", 1))])
    for file in small["file"]:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / file, tmp_path / file)
    small.to_csv(tmp_path / "labels.csv", index=False)

    fit = task_fit("emotion")
    store = ModelStore(fit.store)
    fused = fuse_mesh(store, "emotion", fit.run_id, tmp_path)
    assert fused["fused_from"] == fit.run_id and not fused["promoted"]
    assert store.promoted("emotion") == fit.run_id
    run = store.load("emotion", fused["run_id"])
    assert (run.model_dir / MESH_HEAD).is_file() and run.manifest["fused_from"] == fit.run_id
    assert run.config == store.load("emotion", fit.run_id).config

    paths = [str(tmp_path / f) for f in small.loc[small["Usage"] == "PrivateTest", "file"]]
    plain = get_task("emotion").predictor_class(str(store.load("emotion", fit.run_id).model_dir))
    predictor = get_task("emotion").predictor_class(str(run.model_dir))
    batch = {"path": np.array(paths), "_row": np.arange(len(paths))}
    cnn = np.stack([plain(batch)[f"p_{e}"] for e in EMOTIONS], 1)
    expected = MeshFusion.load(run.model_dir).predict_proba(cnn, MeshGeometry().geometry([load_image(p) for p in paths]))
    out = predictor(batch)
    np.testing.assert_allclose(np.stack([out[f"p_{e}"] for e in EMOTIONS], 1), expected, atol=1e-6)
    assert list(out["label"]) == [EMOTIONS[i] for i in expected.argmax(1)]
    served = predictor({"image": [load_image(paths[0])]})
    np.testing.assert_allclose([served[f"p_{e}"][0] for e in EMOTIONS], expected[0], atol=1e-6)
