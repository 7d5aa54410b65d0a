"""A YOLO model folder (written by `facelab.yolo.export`) run on RGB images: `load`, then
`detect` (boxes) or `classify` (class probabilities)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.yolo import offline  # noqa: F401  (first: ultralytics offline before it is imported)
from facelab.yolo.export import CONFIG_FILE, MODEL_FILE

@dataclass
class LoadedModel:
    """A model folder ready to predict: the ultralytics model, its class names and image size."""

    model: "ultralytics.YOLO"
    names: tuple[str, ...]
    imgsz: int
    device: str


def load(model_dir: str | os.PathLike) -> LoadedModel:
    """A model folder written by `export`, on a GPU when one is visible."""
    import torch
    from ultralytics import YOLO

    from facelab.yolo.export import load_checkpoint

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    # An ultralytics model.pt pickles its model object, so weights_only=True alone cannot load it.
    # A model folder reaches here from ModelStore.load, which has checked every file's digest (and
    # the manifest's HMAC when the store has a key); the file must also pass ultralytics' safe load
    # (weights_only=True with its allow-list of model classes), which YOLO() itself then uses
    # (ULTRALYTICS_SAFE_LOAD, set by facelab.yolo.offline).
    load_checkpoint(model_dir / MODEL_FILE)
    return LoadedModel(YOLO(str(model_dir / MODEL_FILE)), tuple(meta["names"]), int(meta["imgsz"]), device)


def _chunks(images: Sequence[np.ndarray], size: int):
    for start in range(0, len(images), size):
        yield [np.ascontiguousarray(im[..., ::-1]) for im in images[start:start + size]]  # ultralytics takes BGR


def detect(loaded: LoadedModel, images: Sequence[np.ndarray], *, conf: float = 0.001,
           chunk: int = 16) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per RGB image: boxes [n, 4] in its pixels, confidences [n], labels; most confident first."""
    out = []
    for batch in _chunks(images, chunk):
        for result in loaded.model.predict(batch, imgsz=loaded.imgsz, conf=conf, device=loaded.device, verbose=False):
            boxes = result.boxes
            order = np.argsort(-boxes.conf.cpu().numpy(), kind="stable")
            names = result.names
            out.append((boxes.xyxy.cpu().numpy()[order], boxes.conf.cpu().numpy()[order],
                        [names[int(c)] for c in boxes.cls.cpu().numpy()[order]]))
    return out


def classify(loaded: LoadedModel, images: Sequence[np.ndarray], *, chunk: int = 32) -> np.ndarray:
    """Class probabilities [n_images, n_classes] of RGB images, columns in `loaded.names` order."""
    rows = []
    for batch in _chunks(images, chunk):
        for result in loaded.model.predict(batch, imgsz=loaded.imgsz, device=loaded.device, verbose=False):
            probs = result.probs.data.cpu().numpy().astype(np.float64)
            by_name = {result.names[i]: probs[i] for i in range(len(probs))}
            rows.append([by_name.get(name, 0.0) for name in loaded.names])
    return np.asarray(rows).reshape(len(rows), len(loaded.names))
