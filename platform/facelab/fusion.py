"""Fusion of the shipped dlib encodings with the facelab face backbone (issue 23, part 2).

dlib's encodings (the FairFace-layout data's `embedding`: small + large, 256 values) are identity
features: they carry gender well from about 10 years of age and barely below it (README, fairface).
The backbone's trunk was trained on UTKFace's own labels and sees hair, face shape and clothing.
`fuse_backbone_features` writes a copy of a FairFace-layout data set whose every `embedding` is the
dlib vector followed by the backbone trunk's pooled features of the same image (L2-normalised, so
neither block dominates by scale); the fairface task then trains on it unchanged, and the same
command on the dlib-only folder is the comparison.

The images are `file` under the data root (where the fairface converter leaves them). The backbone
must not have trained on the test faces: convert with `--split utkface`, the backbone's own split.
A fused model's inputs are these vectors: its Serve route takes `embedding(s)` of the fused width,
not an image (the image route encodes dlib features only).

mediapipe's face mesh is the other shipped model: `mesh_geometry` turns a mesh into the shape of
the face's contours (eyes, brows, nose, lips, oval) with pose and scale removed, what expressions
change; `scripts/emotion_mesh_fusion.py` measures a late fusion of it with an emotion CNN.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from facelab.errors import FacelabError
from facelab.formats.embeddings import l2_normalize
from facelab.formats.fairface import EMBEDDINGS, write_embeddings
from facelab.tasks.backbone import BackbonePredictor

FUSION_FILE = "fusion.json"


class TrunkFeatures(BackbonePredictor):
    """A backbone model folder as a batch predictor of its trunk's pooled features (`features`)."""

    def outputs(self, x, images: list[np.ndarray]) -> dict:
        from facelab.vision import normalised

        return {"features": self.model.trunk(normalised(x))}

    def finish(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"features": l2_normalize(outputs["features"], axis=1)}


def map_paths(paths: list[str], predictor, kwargs: dict, *, actors: int | None = None,
              batch_size: int = 256) -> dict[str, np.ndarray]:
    """`predictor(**kwargs)` over every image path as a Ray Data actor pool (one actor per cluster
    CPU): its output columns, in the order of `paths`."""
    import ray

    from facelab.predict import cluster_cpus

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FacelabError(f"{missing[0]}: image not found ({len(missing)} of {len(paths)} missing; "
                           "the images are `file` under the data root)")
    rows = ray.data.from_pandas(pd.DataFrame({"path": paths, "_row": np.arange(len(paths))}))
    # materialized first: the actors may then hold every CPU without starving the repartition
    predicted = rows.repartition(target_num_rows_per_block=batch_size).materialize().map_batches(
        predictor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors or cluster_cpus()), num_cpus=1)
    frame = predicted.to_pandas().sort_values("_row")
    return {name: np.stack(frame[name].to_numpy()) for name in frame.columns if name not in ("_row", "path")}


def trunk_features(model_dir: Path, paths: list[str], *, actors: int | None = None) -> np.ndarray:
    """The backbone trunk's unit-length features of every image, in order (a Ray Data job)."""
    columns = map_paths(paths, TrunkFeatures, {"model_dir": str(model_dir)}, actors=actors)
    return columns["features"].astype(np.float32)


# --- mediapipe's mesh: the geometry of an expression -----------------------------------------

MESH_SIDE = 192  # FER's 48-px faces upscaled: mediapipe meshed 180 of 200 sampled ones at this side


def mesh_geometry(mesh: np.ndarray) -> np.ndarray:
    """A 468-point mesh's contour points (facelab.tasks.crowd.contour_points) centred, rotated so
    the cheeks are level and scaled by the face width: x, y of each point, flattened."""
    from facelab.tasks.crowd import FACE_WIDTH, contour_points

    left, right = mesh[FACE_WIDTH[0], :2], mesh[FACE_WIDTH[1], :2]
    dx, dy = right - left
    width = max(float(np.hypot(dx, dy)), 1e-6)
    cos, sin = dx / width, dy / width
    rotation = np.array([[cos, sin], [-sin, cos]])  # turns the cheek line onto the x axis
    points = mesh[contour_points(), :2]
    return (((points - points.mean(0)) @ rotation.T) / width).ravel().astype(np.float32)


class MeshGeometry:
    """Batch predictor of `path` rows: `geometry` (mesh_geometry; NaN where no mesh is found)."""

    def __init__(self, side: int = MESH_SIDE):
        from facelab.faces.landmarks import FaceMesh
        from facelab.tasks.crowd import contour_points

        self.mesh, self.side, self.size = FaceMesh(max_faces=1), side, 2 * len(contour_points())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import cv2

        from facelab.vision import load_image

        geometry = []
        for path in batch["path"]:
            image = cv2.resize(load_image(path), (self.side, self.side), interpolation=cv2.INTER_CUBIC)
            found = self.mesh(image)
            geometry.append(mesh_geometry(found[0]) if found else np.full(self.size, np.nan, np.float32))
        return {"geometry": np.stack(geometry), "_row": batch["_row"]}


def fuse_backbone_features(data: Path, out: Path, store, backbone: str, data_root: Path, *,
                           actors: int | None = None) -> dict:
    """Copy the FairFace-layout folder `data` to `out` with the backbone run's trunk features
    appended to every embedding; returns what was written."""
    from facelab.backbone import BACKBONE_TASK

    data, out = Path(data), Path(out)
    source = data / EMBEDDINGS
    if not source.is_file():
        raise FacelabError(f"{source}: not found (a FairFace-layout folder, e.g. from facelab data convert --task fairface)")
    run_id = store.promoted(BACKBONE_TASK) if backbone == "promoted" else backbone
    run = store.load(BACKBONE_TASK, run_id)
    table = pq.read_table(source)
    files = table.column("file").to_pylist()
    dlib = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    features = trunk_features(run.model_dir, [str(Path(data_root) / f) for f in files], actors=actors)
    out.mkdir(parents=True, exist_ok=True)
    for item in data.iterdir():  # labels, splits, truth: small CSV / JSON files
        if item.is_file() and item.suffix in (".csv", ".json") and item.name != FUSION_FILE:
            shutil.copy2(item, out / item.name)
    write_embeddings(files, np.hstack([dlib, features]), out)
    record = {"source": str(data), "backbone": run.run_id, "rows": len(files),
              "dims": {"embedding": int(dlib.shape[1]), "backbone_features": int(features.shape[1])}}
    (out / FUSION_FILE).write_text(json.dumps(record, indent=2))
    return {"out": str(out), **record}
