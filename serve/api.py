"""The typed API: the gallery's request and answer models, and the OpenAPI document of what is served.

Every served task gets its own path in `/openapi.json` (`POST /<task>`, and `POST /<task>/<action>`
for its actions) with the task's `Request` as the body (JSON, or multipart where it takes images)
and its `Response` (or `image/png`) as the answer; the gallery's routes likewise. Errors share one
schema, `ErrorResponse`. The handlers themselves read and check bodies by hand (serve/limits.py),
so the document is built here from the same models the handlers validate with.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import models_json_schema

from facelab.uploads import ImageB64

MAX_ENROL_IMAGES = 32


class EnrollRequest(BaseModel):
    """Faces of one subject: `images` (or one `image`), as uploads or base64."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    subject_id: Optional[str] = Field(None, min_length=1, max_length=200, description="the subject's id (else `name`)")
    name: Optional[str] = Field(None, min_length=1, max_length=200, description="a display name")
    images: Optional[list[ImageB64]] = Field(None, min_length=1, max_length=MAX_ENROL_IMAGES)
    image: Optional[ImageB64] = None

    @model_validator(mode="after")
    def _complete(self):
        if (self.image is None) == (self.images is None):
            raise ValueError("give exactly one of 'images' or 'image'")
        if not (self.subject_id or self.name or "").strip():
            raise ValueError("give 'subject_id' (or 'name')")
        return self

    @property
    def subject(self) -> str:
        return (self.subject_id or self.name).strip()

    @property
    def all_images(self) -> list[str]:
        return self.images if self.images is not None else [self.image]


class IdentifyRequest(BaseModel):
    """A probe face and how many nearest subjects to answer."""

    model_config = ConfigDict(extra="forbid")
    image: ImageB64
    k: int = Field(5, ge=1, le=100)


class Enrolled(BaseModel):
    subject_id: str
    name: str
    face_ids: list[int]
    faces: int = Field(description="faces the subject now has")


class Match(BaseModel):
    model_config = ConfigDict(extra="allow")
    subject_id: str
    name: str
    distance: float
    same: bool


class Identified(BaseModel):
    matches: list[Match]
    model: str
    threshold: float
    box: list[float]


class Subjects(BaseModel):
    subjects: list[dict[str, Any]]


class ErrorDetail(BaseModel):
    code: str = Field(description="e.g. invalid_request, invalid_json, limit_exceeded, unauthorized, not_found")
    message: str
    field: Optional[str] = Field(None, description="the request field at fault, when there is one")
    limit: Optional[str] = Field(None, description="the limit of serve/config.yaml that was passed")


class ErrorResponse(BaseModel):
    """Every error of the API."""

    error: ErrorDetail


def _operation(summary: str, request: Optional[str], response: Optional[str], *, uploads: bool,
               role: str, tag: str) -> dict:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "security": [{"bearer": []}, {"apiKey": []}],
                                 "x-facelab-role": role}
    if request:
        body = {"application/json": {"schema": {"$ref": request}}}
        if uploads:
            body["multipart/form-data"] = {"schema": {"$ref": request}}
        operation["requestBody"] = {"required": True, "content": body}
    answer = ({"application/json": {"schema": {"$ref": response}}} if response
              else {"image/png": {"schema": {"type": "string", "format": "binary"}}})
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    operation["responses"] = {"200": {"description": "the answer", "content": answer},
                              **{code: {"description": text, "content": error} for code, text in (
                                  ("400", "malformed body"), ("401", "no or unknown API key"),
                                  ("403", "the key's role may not do this"), ("413", "a size limit passed"),
                                  ("415", "wrong content type or not an image"), ("422", "invalid request"))}}
    return operation


def document(app, tasks: dict, gallery: bool, uploads: dict[str, bool]) -> dict:
    """The OpenAPI document: the app's own documented routes plus one path per served task and
    action, and the gallery's bodies. `tasks`: name -> Task; `uploads`: route -> takes images."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    bodies: list[tuple[str, type[BaseModel], str]] = []  # (path, model, mode)
    for name, task in tasks.items():
        bodies.append((f"/{name}", task.Request, "validation"))
        if task.Response is not None:
            bodies.append((f"/{name}#response", task.Response, "serialization"))
        bodies += [(f"/{name}/{action}", schema, "validation") for action, schema in task.actions.items()]
    if gallery:
        bodies += [("/gallery/subjects", EnrollRequest, "validation"), ("/identify", IdentifyRequest, "validation"),
                   ("/gallery/subjects#response", Enrolled, "serialization"),
                   ("/identify#response", Identified, "serialization")]
    bodies.append(("error", ErrorResponse, "serialization"))
    refs, defs = models_json_schema([(model, mode) for _, model, mode in bodies],
                                    ref_template="#/components/schemas/{model}")
    ref = {path: refs[(model, mode)]["$ref"] for path, model, mode in bodies}
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(defs.get("$defs", {}))
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                     "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    paths = doc.setdefault("paths", {})
    for name, task in tasks.items():
        paths[f"/{name}"] = {"post": _operation(f"{name}: one input or a batch", ref[f"/{name}"],
                                                ref.get(f"/{name}#response"), uploads=uploads.get(f"/{name}", False),
                                                role="read", tag="tasks")}
        for action in task.actions:
            path = f"/{name}/{action}"
            paths[path] = {"post": _operation(f"{name} {action}", ref[path], None, uploads=uploads.get(path, False),
                                              role="read", tag="tasks")}
            # an action answers JSON of its own shape
            paths[path]["post"]["responses"]["200"]["content"] = {"application/json": {"schema": {"type": "object"}}}
    if gallery:
        listing = paths.setdefault("/gallery/subjects", {})
        listing["post"] = _operation("enrol a subject's faces", ref["/gallery/subjects"],
                                     ref["/gallery/subjects#response"], uploads=True, role="admin", tag="gallery")
        paths["/identify"] = {"post": _operation("the nearest enrolled subjects to a face", ref["/identify"],
                                                 ref["/identify#response"], uploads=True, role="read", tag="gallery")}
    return doc
