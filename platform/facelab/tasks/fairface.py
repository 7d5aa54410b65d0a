"""FairFace (seed 004): age bin, gender and race from one face embedding.

The seed's network: a shared MLP trunk with one softmax head per attribute, trained on the sum
of the heads' cross-entropies; its "next step", inverse-frequency class weights (w_i ~ 1/n_i),
is the `class_weights: inverse` option. The heads' sizes come from the data's label vocabulary
(9 age bins, 2 genders, 7 FairFace races or the 5 of UTKFace-derived data). Trained through the
shared Ray Train mechanism; per-head LightGBM and logistic-regression baselines are fitted on
the same embeddings and scored on the same validation split, in one table (`comparison.csv`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facelab.answers import Answer, LabelProbabilities
from facelab import estimators, metrics, plots
from facelab.errors import FacelabError
from facelab.formats import Read
from facelab.formats.fairface import ATTRIBUTES, FILES, label_sets
from facelab.task_config import EstimatorConfig, TorchConfig
from facelab.tasks.prepared_torch import Prepared, PreparedTorchTask
from facelab.torch_train import TorchRecipe, load_model
from facelab.uploads import ImageB64

METRIC = "val_mean_accuracy"
COMPARISON = "comparison.csv"
BASELINES = {  # per-head baselines on the same embeddings (facelab.estimators configs)
    "lgbm": EstimatorConfig(model="lgbm", num_leaves=31, learning_rate=0.05, n_estimators=300,
                            colsample_bytree=0.5).model_dump(),
    "logreg": EstimatorConfig(model="logreg", preprocess="standard", C=0.1).model_dump(),
}
MAX_DIM = 4096


def _torch():
    import torch

    return torch


# --- the network ----------------------------------------------------------------------------------

def build_network(config: dict):
    """A shared MLP trunk (`depth` x Linear-BatchNorm-ReLU-Dropout of `width`) and a linear head per
    attribute, sized from `config["labels"]`."""
    nn = _torch().nn

    class MultiHead(nn.Module):
        def __init__(self, dim: int, width: int, depth: int, dropout: float, heads: dict[str, int]):
            super().__init__()
            layers, size = [], dim
            for _ in range(depth):
                layers += [nn.Linear(size, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
                size = width
            self.trunk = nn.Sequential(*layers)
            self.heads = nn.ModuleDict({name: nn.Linear(size, classes) for name, classes in heads.items()})

        def forward(self, x):
            shared = self.trunk(x)
            return {name: head(shared) for name, head in self.heads.items()}

    return MultiHead(int(config["dim"]), int(config["width"]), int(config["depth"]), float(config["dropout"]),
                     {attr: len(config["labels"][attr]) for attr in ATTRIBUTES})


def encode_labels(values, labels: list[str]) -> np.ndarray:
    """Label strings as class indices; "" (no label) as -1, which the loss ignores."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(str(v), -1) for v in values], np.int64)


def inverse_frequency(y: np.ndarray, classes: int) -> list[float]:
    """w_i ~ 1 / n_i (seed 004's next step), scaled so the weighted mean over samples is 1;
    a class absent from training gets weight 0."""
    counts = np.bincount(y[y >= 0], minlength=classes).astype(float)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return (weights * counts.sum() / max((weights * counts).sum(), 1e-12)).tolist()


class FairFaceRecipe(TorchRecipe):
    """The multi-head network as a TorchRecipe (everything it needs is in the config)."""

    def build_model(self, config: dict):
        return build_network(config)

    def prepare(self, batch: dict, config: dict, train: bool) -> dict:
        out = {"embedding": np.stack(list(batch["embedding"])).astype(np.float32)}
        for attr in ATTRIBUTES:
            out[attr] = encode_labels(batch[attr], config["labels"][attr])
        return out

    def loss(self, model, batch: dict, config: dict):
        """The seed's loss: the sum of the heads' cross-entropies (class-weighted when configured)."""
        torch = _torch()
        logits = model(batch["embedding"])
        total = 0.0
        for attr in ATTRIBUTES:
            weights = config["weights"][attr] if config["weights"] else None
            weight = torch.tensor(weights, dtype=logits[attr].dtype, device=logits[attr].device) if weights else None
            total = total + torch.nn.functional.cross_entropy(logits[attr], batch[attr], weight=weight, ignore_index=-1)
        return total

    def evaluate(self, model, batches, config: dict) -> dict[str, float]:
        truth = {a: [] for a in ATTRIBUTES}
        pred = {a: [] for a in ATTRIBUTES}
        for batch in batches:
            logits = model(batch["embedding"])
            for attr in ATTRIBUTES:
                truth[attr].append(batch[attr].cpu().numpy())
                pred[attr].append(logits[attr].argmax(1).cpu().numpy())
        return _scores({a: np.concatenate(truth[a]) for a in ATTRIBUTES}, {a: np.concatenate(pred[a]) for a in ATTRIBUTES},
                       "val_")


def _scores(truth: dict[str, np.ndarray], pred: dict[str, np.ndarray], prefix: str) -> dict[str, float]:
    """Accuracy and macro-F1 per attribute over labelled rows, and the mean accuracy."""
    out = {}
    for attr in ATTRIBUTES:
        keep = truth[attr] >= 0
        out.update({f"{prefix}{k}": v for k, v in
                    metrics.per_attribute({attr: truth[attr][keep]}, {attr: pred[attr][keep]}).items()})
    out[f"{prefix}mean_accuracy"] = float(np.mean([out[f"{prefix}{a}_accuracy"] for a in ATTRIBUTES]))
    return out


# --- per-head baselines ---------------------------------------------------------------------------

class HeadBaselines:
    """One scikit-learn / LightGBM classifier per attribute on the same embeddings."""

    def __init__(self, family: str, labels: dict[str, list[str]], lgbm_rounds: int = BASELINES["lgbm"]["n_estimators"]):
        self.family, self.labels = family, labels
        self.config = {**BASELINES[family], **({"n_estimators": lgbm_rounds} if family == "lgbm" else {})}
        self.models: dict = {}

    def fit(self, x: np.ndarray, y: dict[str, np.ndarray]) -> HeadBaselines:
        for attr in ATTRIBUTES:
            keep = y[attr] >= 0
            self.models[attr] = estimators.build(self.config).fit(x[keep], y[attr][keep])
        return self

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {attr: model.predict(x) for attr, model in self.models.items()}


def _matrix(read: Read, labels: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    frame = read.dataset.select_columns(["embedding", *ATTRIBUTES]).to_pandas()
    return (np.stack(frame.embedding.to_numpy()).astype(np.float32),
            {a: encode_labels(frame[a], labels[a]) for a in ATTRIBUTES})


# --- prediction -----------------------------------------------------------------------------------

class FairFaceAnswer(Answer):
    """Age group, gender and race, each with every class's probability."""

    age: LabelProbabilities
    gender: LabelProbabilities
    race: LabelProbabilities


class FairFaceRequest(BaseModel):
    """An embedding, a batch of them, or a face image (base64 or a multipart file), which the
    face pipeline encodes as the UTKFace conversion does (HOG, largest face, else the whole
    image; dlib small + large: 256 values)."""

    model_config = ConfigDict(extra="forbid")
    embedding: list[float] | None = Field(None, min_length=1, max_length=MAX_DIM)
    embeddings: list[list[float]] | None = Field(None, min_length=1, max_length=1024)
    image: ImageB64 | None = None

    @model_validator(mode="after")
    def _one_of(self):
        given = [v is not None for v in (self.embedding, self.embeddings, self.image)]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'embedding', 'embeddings' or 'image'")
        vectors = [self.embedding] if self.embedding is not None else self.embeddings or []
        if len({len(v) for v in vectors}) > 1 or any(not 1 <= len(v) <= MAX_DIM for v in vectors):
            raise ValueError(f"embeddings must all have the same length, 1 to {MAX_DIM}")
        with np.errstate(over="ignore"):  # the predictor's float32: 1e308 would become infinity there
            if vectors and not np.isfinite(np.asarray(vectors, np.float32)).all():
                raise ValueError("embeddings must not contain NaN, infinity or values beyond float32's range")
        return self


@functools.cache
def _embedder():
    from facelab.embed import UTK_OPTIONS, EmbedOptions, FaceEmbedder

    return FaceEmbedder(vars(EmbedOptions(**{**vars(UTK_OPTIONS), "fallback_whole": True})))


def encode_image(image: str, field: str = "image") -> np.ndarray:
    """An uploaded image as the UTKFace-derived data's embedding (256 values); UploadError (4xx)
    when it is not a readable image."""
    from facelab.uploads import UploadError, image_bytes

    row = _embedder().rows(field, image_bytes(image, field))[0]
    if row["encoding"] is None:
        raise UploadError(422, field, row["reason"] or "no face could be encoded")
    return np.concatenate([row["encoding"], row["encoding_large"]]).astype(np.float32)


class FairFacePredictor:
    """Batch predictor over `embedding` rows: each attribute's label and class probabilities."""

    def __init__(self, model_dir: str):
        self.model = load_model(FairFaceRecipe(), Path(model_dir))
        self.config = json.loads((Path(model_dir) / "config.json").read_text())
        self.labels = self.config["labels"]

    def probabilities(self, x: np.ndarray) -> dict[str, np.ndarray]:
        torch = _torch()
        if x.ndim != 2 or x.shape[1] != int(self.config["dim"]):
            raise FacelabError(f"fairface: embeddings have {x.shape[-1]} values; this model takes {self.config['dim']}")
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device))
        return {a: torch.softmax(v, dim=1).cpu().numpy() for a, v in logits.items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        proba = self.probabilities(np.stack(list(batch["embedding"])).astype(np.float32))
        out = {}
        for attr in ATTRIBUTES:
            out[attr] = np.asarray(self.labels[attr], dtype=object)[proba[attr].argmax(1)]
            for i, label in enumerate(self.labels[attr]):
                out[f"p_{attr}_{label}"] = proba[attr][:, i]
        for key in ("_row", "file"):
            if key in batch:
                out[key] = batch[key]
        return out


# --- the task -------------------------------------------------------------------------------------

class FairFaceConfig(TorchConfig):
    """The seed's multi-head MLP on face embeddings, its cross-entropies summed."""

    model: Literal["mlp"] = "mlp"
    """the network: a shared MLP trunk and a linear head per attribute"""
    width: int = Field(512, ge=1)
    """units of each trunk layer"""
    depth: int = Field(2, ge=0)
    """trunk layers (Linear-BatchNorm-ReLU-Dropout)"""
    dropout: float = Field(0.3, ge=0, lt=1)
    """dropout after each trunk layer"""
    weight_decay: float = 1e-4
    class_weights: Literal["none", "inverse"] = "none"
    """cross-entropy class weights: none, or the inverse class frequency of the training split"""
    epochs: int = 30
    batch_size: int = 128
    baselines: bool = True
    """also fit per-head LightGBM and logistic-regression baselines and report them beside the network"""
    baseline_rounds: int = Field(BASELINES["lgbm"]["n_estimators"], ge=1)
    """boosting rounds of the LightGBM baselines (each head: rounds x classes trees)"""


class FairFaceTask(PreparedTorchTask):
    name = "fairface"
    reference = "004 FairFace from face embeddings: multi-head MLP, summed cross-entropies"
    metric = METRIC
    mode = "max"
    converters = ("fairface",)
    Config = FairFaceConfig
    demo_config: ClassVar[dict] = {"epochs": 5, "width": 128, "baselines": False}
    Request = FairFaceRequest
    Answer = FairFaceAnswer
    predictor_class = FairFacePredictor

    def prepare_data(self, data: dict[str, Read], config: dict) -> Prepared:
        """The trainer's splits, and what the data fixes: dimension, label vocabularies (from the
        data folder's labels.json, else FairFace's) and inverse class frequencies."""
        first = data["train"].dataset.take(1)
        if not first:
            raise FacelabError("fairface: the training split has no rows")
        labels = {a: list(v) for a, v in label_sets(Path(first[0]["_file"]).parent).items()}
        counts = data["train"].dataset.select_columns(list(ATTRIBUTES)).to_pandas()
        weights = {a: inverse_frequency(encode_labels(counts[a], labels[a]), len(labels[a])) for a in ATTRIBUTES}
        state = {"dim": len(first[0]["embedding"]), "labels": labels, "inverse_weights": weights}
        return Prepared({"train": data["train"].dataset, "val": data["val"].dataset}, state)

    def trainer_inputs(self, config: dict, state: dict) -> tuple[FairFaceRecipe, dict]:
        weights = state["inverse_weights"] if config["class_weights"] == "inverse" else None
        return FairFaceRecipe(), {**config, "dim": state["dim"], "labels": state["labels"], "weights": weights}

    def report(self, config: dict, data: dict[str, Read], model_dir: Path, metrics: dict[str, float],
               predictions: pd.DataFrame | None) -> dict:
        """The network and the per-head baselines on the validation split, in one table
        (comparison.csv), with the network's confusion matrices."""
        if not config["baselines"]:
            return metrics
        predictor = FairFacePredictor(str(model_dir))
        labels = predictor.labels
        x_train, y_train = _matrix(data["train"], labels)
        x_val, y_val = _matrix(data["val"], labels)
        proba = predictor.probabilities(x_val)
        predictions = {"mlp": {a: proba[a].argmax(1) for a in ATTRIBUTES}}
        for family in BASELINES:
            predictions[family] = HeadBaselines(family, labels, config["baseline_rounds"]).fit(x_train, y_train).predict(x_val)
        rows, out = [], dict(metrics)
        for family, pred in predictions.items():
            scores = _scores(y_val, pred, "")
            rows.append({"model": family, **scores})
            if family != "mlp":
                out.update({f"{family}_val_{k}": v for k, v in scores.items()})
        pd.DataFrame(rows).to_csv(model_dir / COMPARISON, index=False)
        for attr in ATTRIBUTES:
            names, keep = np.asarray(labels[attr], dtype=object), y_val[attr] >= 0
            plots.confusion_matrix_png(names[y_val[attr][keep]], names[predictions["mlp"][attr][keep]], labels[attr],
                                       model_dir / f"confusion_{attr}.png", title=f"fairface {attr}: validation")
        return out

    def request_rows(self, request: FairFaceRequest) -> tuple[list[dict], bool]:
        if request.image is not None:
            return [{"embedding": encode_image(request.image)}], False
        if request.embedding is not None:
            return [{"embedding": np.asarray(request.embedding, np.float32)}], False
        return [{"embedding": np.asarray(e, np.float32)} for e in request.embeddings], True

    def answer(self, output: dict) -> dict:
        return {attr: {"label": str(output[attr]),
                       "probabilities": {k[len(f"p_{attr}_"):]: float(v) for k, v in output.items()
                                         if k.startswith(f"p_{attr}_")}}
                for attr in ATTRIBUTES}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        import pyarrow.parquet as pq

        first = pd.read_csv(Path(data) / FILES["test"], nrows=1)["file"][0]
        table = pq.read_table(Path(data) / "embeddings.parquet").to_pandas().set_index("file")
        vector = [float(v) for v in table.loc[first, "embedding"]]
        return {"embedding": vector}, {"embedding": vector[:5] + ["x"]}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["file", *ATTRIBUTES]]
