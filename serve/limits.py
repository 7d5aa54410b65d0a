"""The gateway's budgets and its one error shape.

Every request is held to the limits of `Limits` (serve/config.yaml, `args.limits`): body bytes
counted while the body streams in (a chunked body with no Content-Length included), JSON nesting
depth and the length of a JSON number (checked before and while parsing, so a 5,000-digit number or
100,000 nested arrays never reach Python's own limits), the number of images and their decoded
pixels, one by one and in total (read from each image's header, before anything is decoded). A
limit refused is an `ApiError` whose JSON names it:

    {"error": {"code": "limit_exceeded", "message": "...", "field": null, "limit": "max_body_bytes"}}

Every other error of the API has the same shape, without `limit`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import warnings
from functools import cache
from types import MappingProxyType
from typing import Any, Mapping, Optional

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request


class Limits(BaseModel):
    """Per-request budgets (serve/config.yaml `applications[0].args.limits`)."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="bytes of one request body, counted while it streams")
    max_json_depth: int = Field(32, gt=0, description="nesting of arrays and objects in a JSON body")
    max_number_chars: int = Field(64, gt=0, description="characters of one JSON number")
    max_images: int = Field(32, gt=0, description="images in one request")
    max_image_bytes: int = Field(8 * 1024 * 1024, gt=0, description="bytes of one image")
    max_image_pixels: int = Field(25_000_000, gt=0, description="pixels of one image, from its header")
    max_total_pixels: int = Field(50_000_000, gt=0, description="pixels of all the images of one request")


class ApiError(Exception):
    """An HTTP error in the API's one JSON shape."""

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None,
                 limit: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.limit = status, code, message, field, limit
        self.headers = headers

    def body(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.limit:
            error["limit"] = self.limit
        return {"error": error}


def over(limit: str, status: int, message: str, field: Optional[str] = None) -> ApiError:
    return ApiError(status, "limit_exceeded", f"{message} (limit {limit})", field=field, limit=limit)


# --- the body ------------------------------------------------------------------------------------

async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole body, refused (413) as soon as it passes `max_body_bytes`, whatever it declared."""
    cap = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > cap:
            raise over("max_body_bytes", 413, f"request body of {int(declared)} bytes is over {cap} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise over("max_body_bytes", 413, f"request body over {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def replay(request: Request, body: bytes) -> Request:
    """A request over the same scope whose body is `body` (already read), for the multipart parser."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


# --- JSON ----------------------------------------------------------------------------------------

_STRUCTURE = re.compile(rb'[\[\]{}"\\]')


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, found without parsing it (only
    brackets, quotes and backslashes are visited: a large base64 string costs one regex scan)."""
    depth = deepest = 0
    in_string = False
    skip = -1
    for match in _STRUCTURE.finditer(body):
        at = match.start()
        if at == skip:  # the character after a backslash inside a string
            continue
        char = body[at:at + 1]
        if in_string:
            if char == b"\\":
                skip = at + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_json(body: bytes, limits: Limits) -> Any:
    """A JSON body under the depth and number-size limits; 400 when it is not JSON."""
    if json_depth(body) > limits.max_json_depth:
        raise over("max_json_depth", 422, f"JSON nested deeper than {limits.max_json_depth} levels")

    def number(parse):
        def checked(text: str):
            if len(text) > limits.max_number_chars:
                raise ApiError(422, "limit_exceeded", f"a JSON number of {len(text)} characters is longer than "
                               f"{limits.max_number_chars} (limit max_number_chars)", limit="max_number_chars")
            return parse(text)
        return checked

    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_int=number(int), parse_float=number(float))
    except ApiError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None


# --- images --------------------------------------------------------------------------------------

@cache  # per request model, once: generating the JSON schema cost up to 1.5 ms, twice a request
def image_fields(schema: type[BaseModel]) -> Mapping[str, bool]:
    """The request model's image fields (format "image"), each mapped to whether it holds a list."""
    fields = {}
    for name, prop in schema.model_json_schema().get("properties", {}).items():
        for option in [prop, *prop.get("anyOf", [])]:
            if option.get("format") == "image":
                fields[name] = False
            elif option.get("type") == "array" and option.get("items", {}).get("format") == "image":
                fields[name] = True
    return MappingProxyType(fields)


def image_size(data: str, field: str, limits: Limits) -> tuple[int, int]:
    """Width and height of a base64 image from its header alone (nothing is decoded); bad input is
    left to the decoder, which names the field."""
    text = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(text) > limits.max_image_bytes * 4 // 3 + 8:
        raise over("max_image_bytes", 413, f"image over {limits.max_image_bytes} bytes", field)
    try:
        raw = base64.b64decode(text, validate=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the pixel limits below decide, not PIL's warning
            with Image.open(io.BytesIO(raw)) as image:
                return image.size
    except (binascii.Error, ValueError, OSError, SyntaxError, Image.DecompressionBombError):
        return 0, 0
    except Exception:  # an image plugin's own error on a malformed header: the decoder names it
        return 0, 0


def check_images(payload: dict, schema: type[BaseModel], limits: Limits) -> None:
    """Refuse a request with too many images or too many pixels before any image is decoded."""
    images = []
    for name, many in image_fields(schema).items():
        value = payload.get(name)
        if value is None:
            continue
        if many and isinstance(value, list):
            images += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        else:
            images.append((name, value))
    if len(images) > limits.max_images:
        raise over("max_images", 413, f"{len(images)} images in one request, over {limits.max_images}")
    total = 0
    for field, data in images:
        if not isinstance(data, str):
            continue  # the schema refuses it
        width, height = image_size(data, field, limits)
        if width * height > limits.max_image_pixels:
            raise over("max_image_pixels", 413, f"image of {width}x{height} pixels is over "
                       f"{limits.max_image_pixels} pixels", field)
        total += width * height
        if total > limits.max_total_pixels:
            raise over("max_total_pixels", 413, f"the images hold over {limits.max_total_pixels} pixels "
                       "in all", field)
