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
