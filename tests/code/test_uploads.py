"""Uploaded images and request bodies: every kind of bad input is a 4xx naming the field."""

import base64
import io

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from PIL import Image

from facelab.uploads import UploadError, decode_image, encode_png, to_base64


def _png(width=20, height=10, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decodes_bytes_base64_and_data_urls_to_rgb():
    grey = _png(mode="L")
    for data in (grey, to_base64(grey), "data:image/png;base64," + to_base64(grey)):
        image = decode_image(data, "image")
        assert image.shape == (10, 20, 3) and image.dtype == np.uint8
    pixels = np.random.default_rng(0).integers(0, 255, (7, 5, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_png(pixels)), pixels)


@pytest.mark.parametrize("data, status, words", [
    (b"not an image at all", 415, "not a readable image"),
    ("@@@not base64@@@", 422, "base64"),
    (b"", 422, "empty"),
    (_png()[:40], 415, "not a readable image"),  # truncated PNG
])
def test_bad_uploads_name_the_field(data, status, words):
    with pytest.raises(UploadError) as info:
        decode_image(data, "missing")
    assert info.value.status == status and info.value.field == "missing" and words in info.value.reason


def test_size_and_pixel_limits_refuse_before_decoding():
    with pytest.raises(UploadError) as info:
        decode_image(_png(), "image", max_bytes=10)
    assert info.value.status == 413
    # A decompression bomb: a small file that claims a huge canvas is refused from its header.
    bomb = _png(4000, 4000, mode="1")
    assert len(bomb) < 100_000
    with pytest.raises(UploadError) as info:
        decode_image(bomb, "image", max_pixels=1_000_000)
    assert info.value.status == 413 and "4000x4000" in info.value.reason


@pytest.fixture(scope="module")
def echo():
    """The gateway's body parsing behind a bare FastAPI app (no Ray needed)."""
    from serve.app import _payload, install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo_body(request: Request) -> dict:
        return await _payload(request)

    @app.post("/small")  # a 1,000-byte budget
    async def small_body(request: Request) -> dict:
        from serve.limits import Limits

        return await _payload(request, limits=Limits(max_body_bytes=1000))

    return TestClient(app)


def test_multipart_files_become_base64_and_fields_json(echo):
    png = _png()
    answer = echo.post("/echo", files={"image": ("a.png", png, "image/png")}, data={"k": "3", "name": "ann"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert base64.b64decode(body["image"]) == png and body["k"] == 3 and body["name"] == "ann"
    several = echo.post("/echo", files=[("images", ("a.png", png, "image/png")), ("images", ("b.png", png, "image/png"))])
    assert len(several.json()["images"]) == 2


def test_malformed_and_oversized_bodies(echo):
    from serve.app import MAX_BODY_BYTES

    assert echo.post("/echo", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert echo.post("/echo", json=[1, 2]).status_code == 422
    too_big = echo.post("/echo", content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"]["limit"] == "max_body_bytes"
    assert echo.post("/echo", json={"ok": True}).json() == {"ok": True}


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(echo):
    def chunks():
        yield b'{"a": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    answer = echo.post("/small", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["limit"] == "max_body_bytes"
    assert echo.post("/small", json={"a": "x" * 100}).json() == {"a": "x" * 100}


def test_only_json_or_multipart_is_accepted(echo):
    plain = echo.post("/echo", content=b'{"a": 1}', headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"
    assert echo.post("/echo", data={"a": "1"}).status_code == 415  # application/x-www-form-urlencoded
    assert echo.post("/echo", content=b'{"a": 1}', headers={"content-type": "application/json; charset=utf-8"}).json() == {"a": 1}
