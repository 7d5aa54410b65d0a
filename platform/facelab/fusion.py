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
from facelab.formats.fer import EMOTIONS
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

    def geometry(self, images) -> np.ndarray:
        """[n, size] geometry of HxW(x3) uint8 images, NaN rows where no mesh is found."""
        import cv2

        from facelab.vision import rgb

        rows = []
        for image in images:
            found = self.mesh(cv2.resize(rgb(image), (self.side, self.side), interpolation=cv2.INTER_CUBIC))
            rows.append(mesh_geometry(found[0]) if found else np.full(self.size, np.nan, np.float32))
        return np.stack(rows) if rows else np.zeros((0, self.size), np.float32)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from facelab.vision import load_image

        return {"geometry": self.geometry([load_image(p) for p in batch["path"]]), "_row": batch["_row"]}


# --- late fusion of a classifier with a mesh expert ------------------------------------------

MESH_EXPERT, MESH_HEAD = "mesh_expert.txt", "mesh_head.json"  # what a fused model folder adds
MESH_FUSION_CLASSES = {"emotion": EMOTIONS}  # tasks whose predictor fuses: their classes, in p_<class> order
EPS = 1e-6


def stacking_head(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    """A multinomial logistic regression, its regularisation picked by 5-fold CV."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV

    with warnings.catch_warnings():  # scikit-learn 1.9 announces its 1.10 defaults
        warnings.simplefilter("ignore", FutureWarning)
        return LogisticRegressionCV(Cs=10, cv=5, max_iter=2000, random_state=seed).fit(features, labels)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class MeshFusion:
    """A classifier's class probabilities fused late with a mesh expert's.

    The expert is LightGBM on mesh geometry (a face without a mesh is a NaN row, which its trees
    route on their own), trained on the classifier's training faces; the head, a logistic
    regression over both log-probabilities, on its validation faces (the classifier's outputs on
    its own training faces are overconfident)."""

    def __init__(self, expert, coef: np.ndarray, intercept: np.ndarray, classes: int, info: dict):
        self.expert, self.coef, self.intercept, self.classes, self.info = expert, coef, intercept, classes, info

    @classmethod
    def fit(cls, train_geometry, train_labels, val_probs, val_geometry, val_labels, *, seed: int = 0) -> "MeshFusion":
        import lightgbm

        classes = val_probs.shape[1]
        params = {"objective": "multiclass", "num_class": classes, "learning_rate": 0.05, "num_leaves": 31,
                  "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.5, "seed": seed, "verbose": -1}
        expert = lightgbm.train(params, lightgbm.Dataset(train_geometry, np.asarray(train_labels)), num_boost_round=400)
        features = np.hstack([np.log(val_probs + EPS), np.log(expert.predict(val_geometry) + EPS)])
        head = stacking_head(features, np.asarray(val_labels), seed)
        coef, intercept = np.zeros((classes, features.shape[1])), np.full(classes, -1e9)
        coef[head.classes_], intercept[head.classes_] = head.coef_, head.intercept_  # classes val lacks: never
        info = {"head_C": float(head.C_[0]), "head_cv_accuracy": float(next(iter(head.scores_.values())).mean(0).max()),
                "train_meshed": float(np.isfinite(train_geometry[:, 0]).mean()), "train_rows": len(train_geometry),
                "val_rows": len(val_geometry)}
        return cls(expert, coef, intercept, classes, info)

    def expert_probs(self, geometry: np.ndarray) -> np.ndarray:
        return self.expert.predict(geometry).reshape(len(geometry), self.classes)

    def predict_proba(self, probs: np.ndarray, geometry: np.ndarray) -> np.ndarray:
        features = np.hstack([np.log(probs + EPS), np.log(self.expert_probs(geometry) + EPS)])
        return _softmax(features @ self.coef.T + self.intercept)

    def save(self, folder: Path) -> None:
        self.expert.save_model(str(Path(folder) / MESH_EXPERT))
        (Path(folder) / MESH_HEAD).write_text(json.dumps({"coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                                                          "classes": self.classes, "info": self.info}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "MeshFusion | None":
        """The fusion of a model folder, None when it has none."""
        import lightgbm

        folder = Path(folder)
        if not (folder / MESH_HEAD).is_file():
            return None
        head = json.loads((folder / MESH_HEAD).read_text())
        return cls(lightgbm.Booster(model_file=str(folder / MESH_EXPERT)), np.array(head["coef"]),
                   np.array(head["intercept"]), int(head["classes"]), head["info"])


def class_probabilities(task_name: str, model_dir: Path, paths: list[str]) -> np.ndarray:
    """[n, classes] of the task's predictor of `model_dir` over image paths (its p_<class> columns)."""
    from facelab.tasks import get_task

    columns = map_paths(paths, get_task(task_name).predictor_class, {"model_dir": str(model_dir)})
    return np.stack([columns[f"p_{c}"] for c in MESH_FUSION_CLASSES[task_name]], 1).astype(np.float64)


def fuse_mesh(store, task_name: str, run: str, data: Path, *, seed: int = 0, promote: bool = False) -> dict:
    """A new run of `task_name` (emotion): the stored run `run` ('promoted' or an id) with a mesh
    expert and a stacking head fitted on its data's train and val splits (MeshFusion); its predictor
    fuses every prediction. The new run keeps the run's config and records the run it fused."""
    import tempfile

    from facelab.tasks import get_task
    from facelab.train import load_fit_data
    from facelab.store import fingerprint

    task, classes = get_task(task_name), MESH_FUSION_CLASSES.get(task_name)
    if classes is None:
        raise FacelabError(f"task '{task_name}' has no mesh fusion (tasks with one: {', '.join(MESH_FUSION_CLASSES)})")
    run_id = store.promoted(task_name) if run == "promoted" else run
    stored = store.load(task_name, run_id)
    splits = {split: read.dataset.to_pandas() for split, read in load_fit_data(task, data).items()}
    train, val = (splits[s] for s in task.fit_splits)
    geometry = {name: map_paths(list(rows["path"]), MeshGeometry, {})["geometry"].astype(np.float32)
                for name, rows in (("train", train), ("val", val))}
    val_probs = class_probabilities(task_name, stored.model_dir, list(val["path"]))
    labels = {name: rows["label"].map(classes.index).to_numpy() for name, rows in (("train", train), ("val", val))}
    fusion = MeshFusion.fit(geometry["train"], labels["train"], val_probs, geometry["val"], labels["val"], seed=seed)
    with tempfile.TemporaryDirectory(prefix=f"facelab-{task_name}-fused-") as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(stored.model_dir, folder)
        fusion.save(folder)
        metrics = {**stored.metrics, **{f"fusion_{k}": v for k, v in fusion.info.items()}}
        new_id = store.save(task_name, folder, config=stored.config, metrics=metrics, data_fingerprint=fingerprint(data),
                            extra={"data": str(Path(data).resolve()), "fused_from": stored.run_id, "fusion": "mesh"})
    if promote:
        store.promote(task_name, new_id)
    return {"task": task_name, "run_id": new_id, "fused_from": stored.run_id, "promoted": promote, **fusion.info}


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
