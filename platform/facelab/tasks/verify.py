"""HexaFace face verification (seed 002, section 5.3): two faces are one person when the distance of
their codes is at most a threshold. The seed used DeepFace features and reached 98% on AT&T/ORL.

Here the codes are dlib's 128-d ResNet (5-point "small", 68-point "large", or the mean of both
distances), the face found by one of the offline detectors. Nothing is trained: `tune` picks the
detector, the encoder model and the no-face policy by the pairs' own cross-validation (LFW's
protocol: the threshold of best accuracy on K-1 folds is scored on the held-out fold; mean and
std over folds), every image encoded once per detector through a Ray Data actor pool and cached
(facelab.face_codes). `fit` stores the chosen setting with the threshold of best accuracy on all
pairs, the per-fold results and an ROC plot.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from facelab import plots
from facelab.answers import Answer
from facelab.errors import BadRow, FacelabError
from facelab.face_codes import CoderSettings, FaceCoder, FileCodes, cached_codes, encode_files, file_sha
from facelab.faces import distances
from facelab.formats import Read
from facelab.formats.images import load_rgb
from facelab.task_config import FaceCodeConfig
from facelab.tasks.base import Task
from facelab.uploads import ImageB64, UploadError, decode_image

# The encoder settings every sweep encodes up front (trials only pick among them): one per detector.
TUNED_DETECTORS = ("hog", "cnn", "mediapipe", "haar")
MODEL_FILE = "verify.json"


# --- thresholds ---------------------------------------------------------------------------------

def best_threshold(distance: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): the cut of best accuracy when a pair is "same" iff distance <= threshold.
    Cuts lie midway between neighbouring distinct distances; among equally good cuts, the middle
    one. Infinite distances (no face) are never accepted."""
    order = np.argsort(distance, kind="stable")
    d, s = np.asarray(distance, float)[order], np.asarray(same, bool)[order]
    n = len(d)
    # accepting the first i pairs (i = 0..n) is right for the accepted same pairs and the rejected others
    correct = np.concatenate([[0], np.cumsum(s)]) + (~s).sum() - np.concatenate([[0], np.cumsum(~s)])
    cut = np.ones(n + 1, bool)
    cut[1:n] = d[:-1] < d[1:]  # no cut inside a run of equal distances
    cut[1:] &= np.isfinite(d)  # never accept an infinite distance
    best = np.flatnonzero(cut & (correct == correct[cut].max()))
    i = int(best[len(best) // 2])
    below = d[i - 1] if i > 0 else d[0] - 1.0
    above = d[i] if i < n and np.isfinite(d[i]) else below + 1.0
    return float((below + above) / 2), float(correct[i] / n)


def cross_validate_threshold(distance: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """Each fold scored with the threshold of best accuracy on all the other folds."""
    distance, same, folds = np.asarray(distance, float), np.asarray(same, bool), np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold, _ = best_threshold(distance[~test], same[~test])
        accuracies.append(float(np.mean((distance[test] <= threshold) == same[test])))
        thresholds.append(threshold)
    return {"accuracy": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
            "threshold": float(np.mean(thresholds)), "threshold_std": float(np.std(thresholds)),
            "fold_accuracy": accuracies}


# --- pairs and their codes ----------------------------------------------------------------------

@dataclass
class Pairs:
    """The pairs as indices into a list of distinct image files."""

    images: list[str]
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    fold: np.ndarray

    @classmethod
    def from_read(cls, read: Read) -> Pairs:
        frame = read.dataset.to_pandas().sort_values("_row")
        images = sorted(set(frame["path_a"]) | set(frame["path_b"]))
        index = {path: i for i, path in enumerate(images)}
        return cls(images, frame["path_a"].map(index).to_numpy(), frame["path_b"].map(index).to_numpy(),
                   frame["same"].to_numpy().astype(bool), frame["fold"].to_numpy())

    def distances(self, codes: FileCodes, model: str, fallback_whole: bool) -> np.ndarray:
        """Distance of every pair under `model`; without the fallback a pair with a face-less
        image gets an infinite distance (it is never called the same person)."""
        between = distances(codes.codes(), codes.codes(), model)
        distance = between[self.a, self.b]
        if not fallback_whole:
            distance[codes.whole[self.a] | codes.whole[self.b]] = np.inf
        return distance


@dataclass
class TrialData:
    pairs: Pairs
    codes: dict[str, FileCodes]  # CoderSettings.key -> codes of pairs.images


def evaluate(config: dict, pairs: Pairs, codes: FileCodes) -> dict:
    distance = pairs.distances(codes, config["model"], bool(config["fallback_whole"]))
    result = cross_validate_threshold(distance, pairs.same, pairs.fold)
    fold_accuracy = result.pop("fold_accuracy")
    return {**result, "worst_fold_accuracy": float(min(fold_accuracy)), "no_face_images": float(codes.whole.sum())}


# --- serving ------------------------------------------------------------------------------------

class VerifyAnswer(Answer):
    """Whether two faces are one person: their distance against the chosen threshold."""

    distance: float
    threshold: float
    same: bool
    model: str = Field(description="the encodings compared: small, large or their mean")


class VerifyRequest(BaseModel):
    """Two face images (base64 text; multipart files arrive as the same)."""

    model_config = ConfigDict(extra="forbid")
    image_a: ImageB64
    image_b: ImageB64


class VerifyPredictor:
    """Batch predictor over pairs: rows with `image_a`/`image_b` (RGB arrays; Serve) or `path_a`/
    `path_b` (files; batch jobs) -> `distance`, `same`, `found_a`, `found_b` (a face was detected),
    plus `fold`, `file_a`, `file_b`, `_file`, `_row` passed through. Codes are memoised by image content
    (file codes cached by `encode_files` are used as they are), so each distinct image is encoded once."""

    PASSED = ("fold", "file_a", "file_b", "_file", "_row")

    def __init__(self, model_dir: str, memo_size: int = 4096):
        self.spec = json.loads((Path(model_dir) / MODEL_FILE).read_text())
        self.settings = CoderSettings.from_config(self.spec)
        self.coder = FaceCoder(self.settings)
        self.cached = cached_codes(self.settings)
        self.memo: collections.OrderedDict[str, tuple] = collections.OrderedDict()
        self.memo_size = memo_size

    def _memoised(self, key: str, make) -> tuple[dict, bool]:
        if key not in self.memo:
            self.memo[key] = make()
        self.memo.move_to_end(key)
        while len(self.memo) > self.memo_size:
            self.memo.popitem(last=False)
        return self.memo[key]

    def _code_file(self, path: str) -> tuple[dict, bool]:
        """(codes, face found) of an image file: from the encode_files cache when it is there."""
        def make():
            cached = self.cached.get(key)
            if cached is None:
                return self._encode(load_rgb(path))
            return {"small": cached[0][None], "large": cached[1][None]}, not cached[2]

        key = file_sha(path)
        return self._memoised(key, make)

    def _code_image(self, image: np.ndarray) -> tuple[dict, bool]:
        image = np.ascontiguousarray(image)
        return self._memoised(hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest(),
                              lambda: self._encode(image))

    def _encode(self, image: np.ndarray) -> tuple[dict, bool]:
        code = self.coder(image)
        return code.as_codes(), not code.whole_image

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        by_path = "image_a" not in batch
        n = len(batch["path_a" if by_path else "image_a"])
        out = {"distance": np.zeros(n), "same": np.zeros(n, bool), "found_a": np.zeros(n, bool), "found_b": np.zeros(n, bool)}
        fallback = bool(self.spec["fallback_whole"])
        for i in range(n):
            (a, found_a), (b, found_b) = (self._code_file(batch[f"path_{s}"][i]) if by_path
                                          else self._code_image(batch[f"image_{s}"][i]) for s in "ab")
            distance = float(distances(a, b, self.spec["model"])[0, 0])
            if not (found_a and found_b) and not fallback:
                distance = float("inf")
            out["distance"][i], out["found_a"][i], out["found_b"][i] = distance, found_a, found_b
        out["same"] = out["distance"] <= self.spec["threshold"]
        out["threshold"] = np.full(n, float(self.spec["threshold"]))
        out["model"] = np.full(n, self.spec["model"])
        out.update({key: batch[key] for key in self.PASSED if key in batch})
        return out


# --- the task -----------------------------------------------------------------------------------

class VerifyConfig(FaceCodeConfig):
    """The seed's verifier: dlib HOG faces, the mean of the small and large encodings' distances."""

    model: Literal["small", "large", "mean"] = "mean"
    """encodings compared: dlib's small (5-point) or large (68-point) model, or the mean of both distances"""
    fallback_whole: bool = True
    """encode an image without a detected face whole (else its pairs are infinitely far apart)"""
    upsample: float = Field(1.0, ge=1.0)
    """images are scaled by this before landmarks and encoding (finer landmarks on small faces)"""


class VerifyTask(Task):
    name = "verify"
    reference = "002 HexaFace, 5.3: face verification on AT&T/ORL pairs (distance + threshold)"
    metric = "accuracy"
    mode = "max"
    converters = ("verify",)
    Config = VerifyConfig
    fit_splits = ("pairs",)
    submit_split = "pairs"
    Request = VerifyRequest
    Answer = VerifyAnswer
    predictor_class = VerifyPredictor
    demo_conversion = ("orl_faces", {"people": 4, "folds": 2, "n": 4})  # a few real ORL people, else cartoon pairs

    def trial_data(self, data: dict[str, Read]) -> TrialData:
        pairs = Pairs.from_read(data["pairs"])
        settings = [CoderSettings(detector) for detector in TUNED_DETECTORS]
        return TrialData(pairs, {s.key: encode_files(pairs.images, s) for s in settings})

    def evaluate_config(self, config: dict, data: TrialData) -> dict[str, float]:
        key = CoderSettings.from_config(config).key
        if key not in data.codes:
            raise FacelabError(f"verify: a sweep encodes only {sorted(data.codes)}; '{key}' needs `facelab train --config`")
        return evaluate(config, data.pairs, data.codes[key])

    def fit(self, config: dict, data: dict[str, Read], model_dir: Path) -> dict[str, float]:
        pairs = Pairs.from_read(data["pairs"])
        settings = CoderSettings.from_config(config)
        codes = encode_files(pairs.images, settings)
        model, fallback = config["model"], bool(config["fallback_whole"])
        distance = pairs.distances(codes, model, fallback)
        cv = cross_validate_threshold(distance, pairs.same, pairs.fold)
        threshold, fit_accuracy = best_threshold(distance, pairs.same)
        spec = {"detector": settings.detector, "jitters": settings.jitters, "upsample": settings.upsample,
                "model": model, "fallback_whole": fallback, "threshold": threshold, "cv": cv}
        (Path(model_dir) / MODEL_FILE).write_text(json.dumps(spec, indent=2))
        plots.roc_png({f"{settings.detector}, {model}": (distance[pairs.same], distance[~pairs.same])},
                      Path(model_dir) / "roc.png", marks=(1e-3, 1e-2, 1e-1),
                      title=f"verify: ROC of {len(distance)} pairs (CV accuracy {cv['accuracy']:.4f})")
        return {"cv_accuracy": cv["accuracy"], "cv_accuracy_std": cv["accuracy_std"], "threshold": threshold,
                "fit_accuracy": fit_accuracy, "no_face_images": float(codes.whole.sum()), "images_encoded": float(codes.encoded)}

    def request_rows(self, request: VerifyRequest) -> tuple[list[dict], bool]:
        return [{"image_a": decode_image(request.image_a, "image_a"), "image_b": decode_image(request.image_b, "image_b")}], False

    def answer(self, output: dict) -> dict:
        """{"distance", "threshold", "same", "model"}; a side without a face is a 422 naming it."""
        out = output
        for side in "ab":
            if not out[f"found_{side}"]:
                raise UploadError(422, f"image_{side}", "no face found")
        return {"distance": float(out["distance"]), "threshold": float(out["threshold"]), "same": bool(out["same"]),
                "model": str(out["model"])}

    def demo_requests(self, data: Path) -> tuple[dict, dict]:
        first = pd.read_csv(Path(data) / "pairs.csv", nrows=1).iloc[0]
        encoded = {f"image_{s}": base64.b64encode((Path(data) / first[f"file_{s}"]).read_bytes()).decode() for s in "ab"}
        return encoded, {"image_a": encoded["image_a"]}

    def predictions_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        return predictions[["fold", "file_a", "file_b", "same", "distance"]]

    def fallback_rows(self, predictions: pd.DataFrame) -> list[BadRow]:
        """A pair with an image where no face was found: answered with the model's fallback (the
        whole image encoded, or with `fallback_whole: false` an infinite distance, "different")."""
        flagged = []
        for record in predictions.to_dict("records"):
            for side in ("a", "b"):
                if not record[f"found_{side}"]:
                    answer = f"distance {record['distance']:.4g} from the whole image" if np.isfinite(record["distance"]) \
                        else "infinite distance, different"
                    flagged.append(BadRow(str(record.get("_file", "-")), int(record.get("_row", 0)), f"file_{side}",
                                          f"no face found in {record[f'file_{side}']}: kept with the fallback answer ({answer})"))
        return flagged
