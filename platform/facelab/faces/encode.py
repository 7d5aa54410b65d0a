"""dlib's 128-d ResNet face encoder with the 5-point ("small") or 68-point ("large") alignment.

The seed (HexaFace, and the Blitz crowd solution) compares faces by the mean of both models'
distances: `model="mean"`. Distances are Euclidean; dlib's own same-person threshold is 0.6.
"""

from __future__ import annotations

import functools

import numpy as np

from facelab.errors import FacelabError
from facelab.faces.landmarks import Box, dlib_shape

MODELS = ("small", "large", "mean")
POINTS = {"small": 5, "large": 68}


@functools.cache
def _resnet():
    import dlib
    import face_recognition_models as models

    return dlib.face_recognition_model_v1(models.face_recognition_model_location())


def _check(model: str) -> None:
    if model not in MODELS:
        raise FacelabError(f"unknown encoder model '{model}'; models: {', '.join(MODELS)}")


class FaceEncoder:
    """Encodes face boxes of RGB images. `encode` returns {"small": [n,128], "large": [n,128]} for
    the models needed by `model` (both for "mean"). `padding` is the context dlib keeps around the
    aligned face chip (a fraction of the face; dlib's default 0.25)."""

    def __init__(self, jitters: int = 0, padding: float = 0.25):
        if not 0 <= padding <= 2:
            raise FacelabError(f"encoder padding {padding} is outside 0..2")
        self.jitters, self.padding = jitters, padding

    def _one(self, image: np.ndarray, box: Box, points: int) -> np.ndarray:
        shape = dlib_shape(image, box, points)
        return np.asarray(_resnet().compute_face_descriptor(image, shape, self.jitters, self.padding), np.float32)

    def encode(self, image: np.ndarray, boxes: list[Box], model: str = "mean") -> dict[str, np.ndarray]:
        _check(model)
        image = np.ascontiguousarray(image[:, :, :3] if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2), np.uint8)
        wanted = ("small", "large") if model == "mean" else (model,)
        return {m: np.stack([self._one(image, b, POINTS[m]) for b in boxes]) if boxes else np.zeros((0, 128), np.float32)
                for m in wanted}

    def encode_whole(self, images: list[np.ndarray], model: str = "small") -> np.ndarray:
        """Each image taken whole as one face crop (tiles, FER 48x48 faces): [n, 128] for one model."""
        if model == "mean":
            raise FacelabError("encode_whole takes one model, 'small' or 'large'")
        out = []
        for image in images:
            height, width = image.shape[:2]
            out.append(self.encode(image, [(0, 0, width - 1, height - 1)], model)[model][0])
        return np.stack(out) if out else np.zeros((0, 128), np.float32)


def distances(a: dict[str, np.ndarray], b: dict[str, np.ndarray], model: str = "mean") -> np.ndarray:
    """Pairwise Euclidean distances [len(a), len(b)] under `model` (mean of small and large for "mean")."""
    _check(model)
    from facelab.metrics import pairwise_l2

    parts = ("small", "large") if model == "mean" else (model,)
    return np.mean([pairwise_l2(a[m], b[m]) for m in parts], axis=0)
