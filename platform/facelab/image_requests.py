"""The HTTP requests of the image tasks: one image (`image`) or a batch (`images`), as multipart
file uploads or base64 text in JSON; the predictor rows made from them; the demo's bodies.

`ImageRequest` serves the whole-image tasks (detect, mask, age-bins); `FaceImageRequest` the
face-crop tasks (age-gender, emotion, occlusion), whose `detect: true` crops each image to its
largest face first (dlib HOG; 422 when there is none). One `request_rows` turns either into rows.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facelab.uploads import ImageB64, UploadError, decode_image

MAX_IMAGES = 32  # per whole-image request
MAX_FACE_IMAGES = 64  # per face-crop request


class ImageRequest(BaseModel):
    """One image, or a batch of them: base64 text in JSON, or multipart file fields."""

    model_config = ConfigDict(extra="forbid")
    image: ImageB64 | None = None
    images: list[ImageB64] | None = Field(None, min_length=1, max_length=MAX_IMAGES)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.image is None) == (self.images is None):
            raise ValueError("give exactly one of 'image' or 'images'")
        return self


class FaceImageRequest(ImageRequest):
    """One face image (`image`) or several (`images`), as uploads or base64; `detect` crops
    each to its largest face first (dlib HOG; 422 when none is found)."""

    images: list[ImageB64] | None = Field(None, min_length=1, max_length=MAX_FACE_IMAGES)
    detect: bool = False


@functools.cache
def _face_detector():
    from facelab.faces import get_detector

    return get_detector("hog")


def largest_face(image: np.ndarray, field: str, margin: float = 0.12) -> np.ndarray:
    """The square crop around the largest detected face, widened by `margin` of its side (dlib's
    box covers about 90% of the side of a UTKFace-style tight crop, hence the default)."""
    faces = _face_detector()(image)
    if not faces:
        raise UploadError(422, field, "no face found in the image")
    x0, y0, x1, y1 = max((f.box for f in faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    side = max(x1 - x0, y1 - y0) * (1 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = image.shape[:2]
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return image[top:int(min(h, cy + side / 2)), left:int(min(w, cx + side / 2))]


def request_rows(request: ImageRequest) -> tuple[list[dict], bool]:
    """Predictor rows (`image`: RGB uint8) from a validated request, and whether it was a batch;
    a FaceImageRequest with `detect` gives each image's largest face."""
    named = [("image", request.image)] if request.image is not None else \
        [(f"images[{i}]", image) for i, image in enumerate(request.images)]
    crop = isinstance(request, FaceImageRequest) and request.detect
    rows = []
    for field, data in named:
        image = decode_image(data, field)
        rows.append({"image": largest_face(image, field) if crop else image})
    return rows, request.images is not None


def demo_image_requests(image_path: Path) -> tuple[dict, dict]:
    """A valid body (one face image as base64) and a malformed one (not base64)."""
    from facelab.uploads import to_base64

    return {"image": to_base64(Path(image_path).read_bytes())}, {"image": "this is not an image!"}
