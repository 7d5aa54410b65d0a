"""The image tasks' one request model and one request_rows: whole images (detect, mask, age-bins) and
face crops (age-gender, emotion, occlusion: `detect` crops to the largest face)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from facelab.image_requests import FaceImageRequest, ImageRequest, request_rows
from facelab.tasks import get_task
from facelab.uploads import UploadError, to_base64


def _png(width: int, height: int, colour=(90, 120, 150)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return to_base64(buffer.getvalue())


def test_one_image_or_a_batch_decoded_in_order():
    rows, batched = request_rows(ImageRequest(image=_png(8, 6)))
    assert not batched and rows[0]["image"].shape == (6, 8, 3) and rows[0]["image"].dtype == np.uint8
    rows, batched = request_rows(ImageRequest(images=[_png(4, 4), _png(5, 3, (1, 2, 3))]))
    assert batched and [r["image"].shape for r in rows] == [(4, 4, 3), (3, 5, 3)]
    assert tuple(rows[1]["image"][0, 0]) == (1, 2, 3)


@pytest.mark.parametrize("body", [{}, {"image": "x", "images": ["y"]}, {"images": []}, {"image": "x", "size": 3}])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(ValidationError):
        ImageRequest.model_validate(body)


def test_batch_limits_and_the_detect_flag():
    with pytest.raises(ValidationError):
        ImageRequest.model_validate({"images": ["a"] * 33})
    with pytest.raises(ValidationError):
        ImageRequest.model_validate({"image": "a", "detect": True})  # whole-image tasks do not crop
    assert FaceImageRequest.model_validate({"images": ["a"] * 64, "detect": True}).detect
    with pytest.raises(ValidationError):
        FaceImageRequest.model_validate({"images": ["a"] * 65})


def test_a_bad_upload_names_its_field_and_detect_needs_a_face():
    with pytest.raises(UploadError) as bad:
        request_rows(ImageRequest(images=[_png(4, 4), to_base64(b"not an image")]))
    assert bad.value.field == "images[1]"
    rows, _ = request_rows(FaceImageRequest(image=_png(40, 40)))  # no detect: the image as it is
    assert rows[0]["image"].shape == (40, 40, 3)
    with pytest.raises(UploadError) as faceless:
        request_rows(FaceImageRequest(image=_png(80, 80), detect=True))
    assert faceless.value.status == 422 and faceless.value.field == "image"


@pytest.mark.parametrize("name, model", [("detect", ImageRequest), ("mask", ImageRequest), ("age-bins", ImageRequest),
                                         ("mask-face", ImageRequest), ("age-gender", FaceImageRequest),
                                         ("emotion", FaceImageRequest), ("occlusion", FaceImageRequest)])
def test_every_image_task_takes_the_shared_request(name, model):
    task = get_task(name)
    assert issubclass(task.Request, model)
    rows, batched = task.request_rows(task.Request.model_validate({"images": [_png(6, 6)]}))
    assert batched and rows[0]["image"].shape == (6, 6, 3)
