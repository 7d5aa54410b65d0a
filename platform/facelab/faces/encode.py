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

    def encode(self, image: np.ndarray, boxes: list[Box], model: str = "mean") -> dict[str, np.ndarray]:
        return self.encode_many([image] * len(boxes), boxes, model)

    def encode_many(self, images: list[np.ndarray], boxes: list[Box], model: str = "mean") -> dict[str, np.ndarray]:
        """Face `boxes[i]` of `images[i]` (the same image may repeat), every face through dlib's network in
        one batched call per model: the numbers `encode` gives face by face, with less overhead."""
        import dlib

        _check(model)
        if len(images) != len(boxes):
            raise FacelabError(f"encode_many: {len(images)} images for {len(boxes)} boxes")
        wanted = ("small", "large") if model == "mean" else (model,)
        if not boxes:
            return {m: np.zeros((0, 128), np.float32) for m in wanted}
        ready: dict[int, np.ndarray] = {}  # id(image) -> RGB uint8, converted once per distinct image
        rgb = []
        for image in images:
            if id(image) not in ready:
                array = np.asarray(image)
                ready[id(image)] = np.ascontiguousarray(
                    array[:, :, :3] if array.ndim == 3 else np.repeat(array[:, :, None], 3, 2), np.uint8)
            rgb.append(ready[id(image)])
        out = {}
        for m in wanted:
            shapes = [dlib.full_object_detections([dlib_shape(im, box, POINTS[m])]) for im, box in zip(rgb, boxes)]
            codes = _resnet().compute_face_descriptor(rgb, shapes, self.jitters, self.padding)
            out[m] = np.stack([np.asarray(c[0], np.float32) for c in codes])
        return out

    def encode_whole(self, images: list[np.ndarray], model: str = "small") -> np.ndarray:
        """Each image taken whole as one face crop (tiles, FER 48x48 faces): [n, 128] for one model."""
        if model == "mean":
            raise FacelabError("encode_whole takes one model, 'small' or 'large'")
        boxes = [(0, 0, image.shape[1] - 1, image.shape[0] - 1) for image in images]
        return self.encode_many(images, boxes, model)[model]


def distances(a: dict[str, np.ndarray], b: dict[str, np.ndarray], model: str = "mean") -> np.ndarray:
    """Pairwise Euclidean distances [len(a), len(b)] under `model` (mean of small and large for "mean")."""
    _check(model)
    from facelab.metrics import pairwise_l2

    parts = ("small", "large") if model == "mean" else (model,)
    return np.mean([pairwise_l2(a[m], b[m]) for m in parts], axis=0)
