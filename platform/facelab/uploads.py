"""Images that arrive over HTTP (multipart files or base64 in JSON), checked before decoding.

`decode_image` turns bytes or base64 text into an RGB array, or raises `UploadError` with the
HTTP status a service should answer: 413 for too many bytes or pixels (decompression bombs are
refused from the header, before the pixels are decoded), 415/422 for what is not an image.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from PIL import Image
from pydantic import Field

from facelab.errors import FacelabError

MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # 6,300 x 6,300; PIL's own bomb limit is ~179M


class UploadError(FacelabError):
    """Bad uploaded input: which field, why, and the HTTP status to answer with."""

    def __init__(self, status: int, field: str, reason: str):
        self.status, self.field, self.reason = status, field, reason
        super().__init__(f"field '{field}': {reason}")

    def __reduce__(self):  # raised inside a Serve replica, it must survive pickling to reach the gateway
        return type(self), (self.status, self.field, self.reason)


def image_bytes(data: bytes | str, field: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Raw bytes of an upload given as bytes, base64 text or a `data:image/...;base64,` URL."""
    if isinstance(data, str):
        text = data.split(",", 1)[1] if data.startswith("data:") else data
        if len(text) > max_bytes * 4 // 3 + 8:
            raise UploadError(413, field, f"image over {max_bytes} bytes")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UploadError(422, field, "not valid base64") from None
    if len(data) == 0:
        raise UploadError(422, field, "empty file")
    if len(data) > max_bytes:
        raise UploadError(413, field, f"image over {max_bytes} bytes ({len(data)})")
    return data


def decode_image(data: bytes | str, field: str = "image", *, max_bytes: int = MAX_IMAGE_BYTES,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An uploaded image as an HxWx3 uint8 RGB array, or UploadError (4xx) naming the field."""
    raw = image_bytes(data, field, max_bytes=max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise UploadError(413, field, f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
                im.load()
                return np.asarray(im.convert("RGB"))
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(413, field, f"refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise UploadError(415, field, f"not a readable image ({exc.__class__.__name__})") from None


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# A request-schema field holding an image: base64 text in JSON; multipart files arrive as the same.
ImageB64 = Annotated[str, Field(min_length=1, json_schema_extra={"format": "image", "contentEncoding": "base64"})]


@dataclass(frozen=True)
class Binary:
    """A non-JSON response body (e.g. a PNG) returned by a task's `response`."""

    media_type: str
    data: bytes
