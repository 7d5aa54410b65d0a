"""The gallery over images, for Serve: enrol, list, delete and identify the main face of images."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.faces.encode import MODELS
from facelab.gallery.store import PARTS, Gallery


class GalleryService:
    """Enrol, list, delete and identify faces in images against a gallery file.

    `detector`, `jitters`, `upsample`: the encoder settings (facelab.face_codes.CoderSettings);
    `model`: the distance searched by ("mean" of both dlib models by default); `threshold`: the
    distance up to which a match counts as the same person (dlib's 0.6 by default; pass the
    verify task's tuned threshold for the same model to agree with `POST /verify`).
    An image without a face is refused with UploadError(422) naming its field.
    """

    def __init__(self, db_path: str | os.PathLike, *, detector: str = "hog", jitters: int = 0, upsample: float = 1.0,
                 model: str = "mean", threshold: float = 0.6):
        from facelab.face_codes import CoderSettings, FaceCoder

        if model not in MODELS:
            raise FacelabError(f"unknown encoder model '{model}'; models: {', '.join(MODELS)}")
        self.settings = CoderSettings(detector, jitters, upsample)
        self.coder = FaceCoder(self.settings)
        self.gallery = Gallery(db_path)
        self.model, self.threshold = model, float(threshold)

    @classmethod
    def from_verify_model(cls, db_path: str | os.PathLike, model_dir: str | os.PathLike) -> GalleryService:
        """Encoder, model and threshold of a stored verify run (its `verify.json`)."""
        spec = json.loads((Path(model_dir) / "verify.json").read_text())
        return cls(db_path, detector=spec["detector"], jitters=int(spec["jitters"]),
                   upsample=float(spec["upsample"]), model=spec["model"], threshold=float(spec["threshold"]))

    def _face(self, image: np.ndarray, field: str):
        from facelab.uploads import UploadError

        code = self.coder(image)
        if code.whole_image:
            raise UploadError(422, field, "no face found")
        return code

    def enroll(self, subject_id: str, name: str, images: list[np.ndarray]) -> dict:
        """Encode the main face of every image (all must have one) and add them to the subject.
        Returns {"subject_id", "name", "face_ids", "faces"} (faces: the subject's total)."""
        if not images:
            raise FacelabError("enroll needs one or more images")
        found = [self._face(image, f"images[{i}]") for i, image in enumerate(images)]
        meta = [{"box": [round(float(v), 1) for v in c.face.box], "detector": self.settings.detector,
                 "image_sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()}
                for c, image in zip(found, images)]
        codes = {part: np.stack([getattr(c, part) for c in found]) for part in PARTS}
        return self.gallery.enroll(subject_id, name, codes, faces=meta)

    def list(self) -> list[dict]:
        """[{"subject_id", "name", "created_at", "metadata", "faces"}] in enrolment order."""
        return self.gallery.subjects()

    def delete(self, subject_id: str) -> bool:
        return self.gallery.delete(subject_id)

    def identify(self, image: np.ndarray, k: int = 5) -> dict:
        """The k nearest subjects to the image's main face: {"matches": [{"subject_id", "name",
        "distance", "face_id", "same"}], "model", "threshold", "box"}; `same` is distance <= threshold."""
        code = self._face(image, "image")
        matches = self.gallery.search({"small": code.small, "large": code.large}, k=k, model=self.model)
        for match in matches:
            match["same"] = match["distance"] <= self.threshold
        return {"matches": matches, "model": self.model, "threshold": self.threshold,
                "box": [round(float(v), 1) for v in code.face.box]}
