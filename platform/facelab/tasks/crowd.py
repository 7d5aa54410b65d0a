"""AI Blitz XIII face recognition (seed 000, section 4): find the missing face in its 100-face crowd.

Nothing is learned: every face (the crowd's 100 tiles and the missing image, taken as one more
tile) gets features, and the answer is the tile nearest to the missing face.
- `method: encoding`, the seed's winner (78.8% on the StyleGAN crowds): dlib's 128-d ResNet
  encodings compared by Euclidean distance; `model` small (5-point alignment), large (68-point) or
  mean (the mean of both distances, the seed's choice). `tiles: whole` encodes each tile as one
  face crop (FaceEncoder.encode_whole); `tiles: detect` first finds the face in the tile with
  `detector` (HOG; the whole tile when it finds none) and encodes that box.
- `method: landmarks`, the seed's second approach (50% there): mediapipe's 468-point mesh; the
  pairwise distances between the points of its contour groups (eyes, brows, nose, lips, face oval)
  divided by the face width, compared by mean absolute difference; a face without a mesh is
  infinitely far.
`fit` only stores the config. `tune` chooses method, model and tiles by accuracy on labelled
crowds (`truth.csv` beside `missing/` and `target/`): the batch job computes every variant's
distances once per sweep (Ray Data, actor pool), and each trial only compares them. Tune on other
crowds than the ones you score (e.g. `facelab data convert --seed 1`) to keep the choice honest.
"""

from __future__ import annotations

import base64
import functools
import json
import tempfile
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from facelab.answers import Answer
from facelab.errors import BadRow, FacelabError
from facelab.faces import MODELS, FaceEncoder, FaceMesh, distances, get_detector
from facelab.formats import Read
from facelab.formats.crowd import GRID, N_FACES, SIZE, TILE, tiles
from facelab.formats.images import load_rgb
from facelab.task_config import FaceCodeConfig
from facelab.tasks.base import Task
from facelab.uploads import ImageB64, UploadError, decode_image

METHODS = ("encoding", "landmarks")
TILE_MODES = ("whole", "detect")
LANDMARKS = "landmarks"
# Every way of comparing faces: "landmarks" and "encoding-<tiles>-<model>".
VARIANTS = (LANDMARKS, *(f"encoding-{t}-{m}" for t in TILE_MODES for m in MODELS))
CONFIG_FILE = "crowd_config.json"
TRUTH = "truth"  # the read_for_fit entry holding truth.csv, when the crowds are labelled


def variant_of(config: dict) -> str:
    """The variant a config names."""
    method = config["method"]
    if method not in METHODS:
        raise FacelabError(f"crowd method '{method}' is not one of {', '.join(METHODS)}")
    if method == LANDMARKS:
        return LANDMARKS
    name = f"encoding-{config['tiles']}-{config['model']}"
    if name not in VARIANTS:
        raise FacelabError(f"crowd config {config}: tiles must be one of {TILE_MODES}, model one of {MODELS}")
    return name


def as_tile(image: np.ndarray) -> np.ndarray:
    """An RGB image as one TILE x TILE face tile: letterboxed to a square (edge pixels), then resized."""
    import cv2

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    height, width = image.shape[:2]
    if (height, width) == (TILE, TILE):
        return image
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left, cv2.BORDER_REPLICATE)
    return cv2.resize(square, (TILE, TILE), interpolation=cv2.INTER_AREA if side > TILE else cv2.INTER_CUBIC)


# --- landmarks: the seed's mediapipe approach ------------------------------------------------

@functools.cache
def contour_points() -> np.ndarray:
    """Mesh indices of mediapipe's contour groups: eyes, brows, nose, lips and face oval."""
    from mediapipe.python.solutions import face_mesh_connections as groups

    edges = (groups.FACEMESH_LEFT_EYE | groups.FACEMESH_RIGHT_EYE | groups.FACEMESH_LEFT_EYEBROW
             | groups.FACEMESH_RIGHT_EYEBROW | groups.FACEMESH_NOSE | groups.FACEMESH_LIPS | groups.FACEMESH_FACE_OVAL)
    return np.array(sorted({i for edge in edges for i in edge}))


FACE_WIDTH = (234, 454)  # mesh points on the left and right cheek: the scale of a face


def mesh_features(mesh: np.ndarray | None) -> np.ndarray:
    """Pairwise 2-D distances of the contour points over the face width; NaN without a mesh."""
    from scipy.spatial.distance import pdist

    n = len(contour_points())
    if mesh is None:
        return np.full(n * (n - 1) // 2, np.nan, np.float32)
    width = np.linalg.norm(mesh[FACE_WIDTH[0], :2] - mesh[FACE_WIDTH[1], :2])
    return (pdist(mesh[contour_points(), :2]) / max(width, 1e-6)).astype(np.float32)


def landmark_distances(missing: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mean absolute difference of the missing face's features to each face's; inf where either has none."""
    gaps = np.abs(faces - missing[None]).mean(axis=1)
    return np.where(np.isfinite(gaps), gaps, np.inf)


# --- the solver ------------------------------------------------------------------------------

class CrowdSolver:
    """The distances of the missing face to every tile of its crowd, under one or more variants.

    Features are computed once per crowd for all the variants asked for (the small and large
    encodings of whole tiles and of detected faces, the mesh), so tuning pays for each once.
    """

    def __init__(self, variants, detector: str = "hog", jitters: int = 0):
        self.variants = list(dict.fromkeys(variants))
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise FacelabError(f"unknown crowd variants {sorted(unknown)}; variants: {', '.join(VARIANTS)}")
        self.encoder = FaceEncoder(jitters)
        # only the boxes are used (the encoder fits its own landmarks): no 68-point fit per detection
        self.detector = get_detector(detector, fallback_whole=True, landmarks=False)
        self.mesh = FaceMesh(max_faces=1) if LANDMARKS in self.variants else None
        self.missing_found = True  # of the last crowd (distances)

    def _needed(self) -> dict[str, set[str]]:
        """tiles mode -> the encoder models (small, large) the variants need."""
        needed: dict[str, set[str]] = {}
        for name in self.variants:
            if name != LANDMARKS:
                _, mode, model = name.split("-")
                needed.setdefault(mode, set()).update(("small", "large") if model == "mean" else (model,))
        return needed

    def encodings(self, faces: list[np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """tiles mode -> encoder model -> [n, 128] encodings of `faces`."""
        out = {}
        for mode, models in self._needed().items():
            if mode == "whole":
                out[mode] = {m: self.encoder.encode_whole(faces, m) for m in models}
                continue
            model = "mean" if len(models) == 2 else next(iter(models))
            found = [self.detector(face)[0] for face in faces]
            self.missing_found = not found[0].whole_image  # the first face is the missing one
            codes = self.encoder.encode_many(faces, [face.box for face in found], model)
            out[mode] = {m: codes[m] for m in models}
        return out

    def landmark_features(self, faces: list[np.ndarray]) -> np.ndarray:
        meshes = [self.mesh(face) for face in faces]
        return np.stack([mesh_features(found[0] if found else None) for found in meshes])

    def distances(self, missing: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        """variant -> the 100 distances of the missing face to the crowd's tiles (tile order);
        `missing_found` then says whether the detector found a face in the missing image (False:
        the whole tile stood in for it)."""
        faces = [as_tile(missing), *tiles(target)]
        self.missing_found = True
        codes = self.encodings(faces)
        out = {}
        for name in self.variants:
            if name == LANDMARKS:
                features = self.landmark_features(faces)
                out[name] = landmark_distances(features[0], features[1:])
            else:
                _, mode, model = name.split("-")
                first = {m: c[:1] for m, c in codes[mode].items()}
                rest = {m: c[1:] for m, c in codes[mode].items()}
                out[name] = distances(first, rest, model)[0]
        return out


def _crowds(batch: dict[str, np.ndarray]):
    """(missing, target) images of a batch: decoded arrays (Serve) or file paths (batch jobs)."""
    if "missing" in batch:
        yield from zip(batch["missing"], batch["target"])
        return
    for missing, target in zip(batch["missing_path"], batch["target_path"]):
        yield load_rgb(missing), load_rgb(target)


class CrowdPredictor:
    """Batch predictor over crowds: the nearest tile (`index`) and its `distance`; with
    `score_variants` in the config also `d_<variant>`, the 100 distances of each (for tuning)."""

    def __init__(self, model_dir: str):
        config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
        self.variant = variant_of(config)
        self.scored = list(config.get("score_variants", []))  # only in the scoring config of `trial_data`
        self.solver = CrowdSolver([self.variant, *self.scored], detector=config["detector"],
                                  jitters=int(config["jitters"]))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found, missing_found = [], []
        for missing, target in _crowds(batch):
            found.append(self.solver.distances(missing, target))
            missing_found.append(self.solver.missing_found)
        chosen = np.stack([d[self.variant] for d in found]) if found else np.zeros((0, N_FACES))
        index = chosen.argmin(axis=1)
        out = {"index": index.astype(np.int64), "distance": chosen[np.arange(len(index)), index].astype(np.float64)}
        out.update({f"d_{v}": np.stack([d[v] for d in found]).astype(np.float32) for v in self.scored})
        out["missing_found"] = np.array(missing_found, bool)
        out.update({key: batch[key] for key in ("_file", "_row", "image_id") if key in batch})
        return out


class CrowdAnswer(Answer):
    """The grid tile (0..99, row-major) that holds the missing face."""

    index: int = Field(ge=0, lt=GRID * GRID)
    distance: float | None = Field(description="its face distance; null when no face was compared")
    row: int = Field(ge=0, lt=GRID)
    col: int = Field(ge=0, lt=GRID)


class CrowdRequest(BaseModel):
    """The missing face and its crowd (2160x2160, 10x10 tiles), each an image as base64 (or a file)."""

    model_config = ConfigDict(extra="forbid")
    missing: ImageB64
    target: ImageB64


@functools.cache
def _face_check():
    """Is there a face in the missing image? BlazeFace finds real and cartoon faces where HOG misses some."""
    return get_detector("mediapipe")


def write_config(config: dict, model_dir: Path) -> Path:
    path = Path(model_dir) / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


class CrowdConfig(FaceCodeConfig):
    """The seed's winner: dlib encodings of the face found in each tile, the mean of both distances."""

    method: Literal["encoding", "landmarks"] = "encoding"
    """compare dlib's face encodings, or the distances between mediapipe's mesh landmarks"""
    model: Literal["small", "large", "mean", "mesh"] = "mean"
    """encoding: dlib's small (5-point), large (68-point) or the mean of both distances; landmarks: mesh"""
    tiles: Literal["whole", "detect"] = "detect"
    """encoding: each tile encoded whole, or the face the detector finds in it (the whole tile when none)"""


class CrowdTask(Task):
    name = "crowd"
    reference = "000 AI Blitz XIII, 4: find the missing face in the crowd"
    metric = "accuracy"
    mode = "max"
    converters = ("crowd",)
    Config = CrowdConfig
    fit_splits = ("test",)
    predict_batch_size: ClassVar[int] = 1  # one crowd (101 faces) per predictor call, spread over the actors
    Request = CrowdRequest
    Answer = CrowdAnswer
    predictor_class = CrowdPredictor

    def read_for_fit(self, data: Path, *, skip_bad: bool = False) -> dict[str, Read]:
        """The crowds, and their truth when `truth.csv` is there (tuning needs it; fit does not)."""
        import ray

        reads = super().read_for_fit(data, skip_bad=skip_bad)
        truth = Path(data) / self.format.synthetic_truth
        if truth.is_file():
            frame = pd.read_csv(truth, dtype={"ImageID": str})
            reads[TRUTH] = Read(ray.data.from_pandas(frame.rename(columns={"ImageID": "image_id"})))
        return reads

    def trial_data(self, data: dict[str, Read]) -> pd.DataFrame:
        """Every labelled crowd with the 100 distances of every variant, by one batch job."""
        import ray

        from facelab.predict import predict_dataset

        if TRUTH not in data:
            raise FacelabError("tuning the crowd task needs labelled crowds: truth.csv (ImageID,target) beside "
                               "missing/ and target/")
        with tempfile.TemporaryDirectory(prefix="facelab-crowd-") as tmp:
            write_config({**self.default_config, "score_variants": list(VARIANTS)}, Path(tmp))
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
            scored = predict_dataset(self, Path(tmp), data["test"].dataset, actors=actors)
        truth = data[TRUTH].dataset.to_pandas()
        return scored.merge(truth[["image_id", "target"]], on="image_id", how="inner")

    def evaluate_config(self, config: dict, data: pd.DataFrame) -> dict[str, float]:
        """Accuracy (and top-5 accuracy) of the config's variant on the labelled crowds."""
        found = np.stack(data[f"d_{variant_of(config)}"].to_numpy())
        truth = data["target"].to_numpy(int)
        # a tie with the answer counts against it (all-infinite distances are no hit)
        ranks = (found <= found[np.arange(len(truth)), truth][:, None]).sum(axis=1) - 1
        return {"accuracy": float(np.mean(ranks == 0)), "top5_accuracy": float(np.mean(ranks < 5)),
                "crowds": float(len(truth))}

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        """Nothing to learn: the model is the config (its variant checked); no metric is claimed."""
        variant_of(config)
        write_config(config, model_dir)
        return {}

    def request_rows(self, request: CrowdRequest) -> tuple[list[dict], bool]:
        target = decode_image(request.target, field="target")
        if target.shape[:2] != (SIZE, SIZE):
            raise UploadError(422, "target", f"a crowd is {SIZE}x{SIZE} ({GRID}x{GRID} tiles of {TILE}), "
                                             f"got {target.shape[1]}x{target.shape[0]}")
        missing = as_tile(decode_image(request.missing, field="missing"))
        if not _face_check()(missing):
            raise UploadError(422, "missing", "no face found in the missing image")
        return [{"missing": missing, "target": target}], False

    def answer(self, output: dict) -> dict:
        index, distance = int(output["index"]), float(output["distance"])
        return {"index": index, "distance": round(distance, 4) if np.isfinite(distance) else None,
                "row": index // GRID, "col": index % GRID}

    def demo_data(self, out: Path) -> Path:
        """Two synthetic crowds: a crowd costs 101 face encodings per variant (tens of CPU seconds)."""
        return self.format.synthesize(Path(out), n=2, seed=0)

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        first = min((Path(data) / "missing").glob("*.jpg"))
        target = base64.b64encode((Path(data) / "target" / first.name).read_bytes()).decode()
        good = {"missing": base64.b64encode(first.read_bytes()).decode(), "target": target}
        return good, {"missing": base64.b64encode(b"not an image").decode(), "target": target}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"_row": predictions["_row"], "image_id": predictions["image_id"],
                             "target": predictions["index"].astype(int)})

    def fallback_rows(self, predictions: pd.DataFrame) -> list[BadRow]:
        """A crowd whose missing image shows no face the detector finds: its whole tile was encoded."""
        return [BadRow(str(row.get("_file", "-")), int(row.get("_row", 0)), "missing",
                       f"no face found in the missing image {row['image_id']}: kept with the fallback answer "
                       f"(the whole tile encoded; tile {int(row['index'])})")
                for row in predictions.to_dict("records") if not row.get("missing_found", True)]
