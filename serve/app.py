"""The facelab Serve application: one HTTP gateway composed over one model deployment per task.

    app = Gateway.bind({task: TaskModel.options(name=task).bind(task, store) for task in tasks},
                       GalleryModel.bind(gallery_db))

Each TaskModel loads its task's promoted run from the model store and runs the task's own batch
predictor (the class the batch jobs use) on requests batched by `@serve.batch`. The gateway takes
JSON or multipart/form-data (file fields become base64 text under the same name), validates with
the task's request schema and answers bad input with a 4xx: malformed JSON 400, an oversized body
413, a schema violation 422, an upload that is not an image 415, an image over the pixel limit or
a decompression bomb 413, no face found 422, an unknown task 404. The web page at `/` has a form
for every served endpoint.
"""


import asyncio
import base64
import json
import logging
from typing import Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from facelab import config as paths
from facelab.errors import FacelabError
from facelab.predict import predict_rows
from facelab.store import ModelStore
from facelab.tasks import get_task, task_names
from facelab.uploads import Binary, UploadError, decode_image

logger = logging.getLogger("ray.serve")
MAX_BODY_BYTES = 16 * 1024 * 1024

api = FastAPI(title="facelab", description="Face analysis models served from the facelab model store.")


# Small CPU reservations: a graph of every task (13 models, the gallery and the gateway) must
# fit on a laptop; replicas idle between requests. Raise them per deployment in serve/config.yaml.
@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class TaskModel:
    """The promoted model of one task behind its batch predictor."""

    def __init__(self, task: str, store: Optional[str] = None):
        self.task = get_task(task)
        run = ModelStore(paths.store_uri(store)).load(task, check_config=self.task.config)
        self.run_id = run.run_id
        self.predictor = self.task.predictor_class(str(run.model_dir))

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def predict(self, rows: list[dict]) -> list[dict]:
        return predict_rows(self.predictor, rows)

    async def act(self, action: str, request: BaseModel) -> dict:
        """An unbatched extra endpoint, `POST /<task>/<action>`."""
        return getattr(self.predictor, action.replace("-", "_"))(request)

    def info(self) -> dict:
        return {"task": self.task.name, "run_id": self.run_id, "actions": sorted(self.task.actions)}


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=16)
class GalleryModel:
    """The 1:N identification gallery (SQLite) behind the face encoder; it takes the promoted
    `verify` model's detector, encoder and threshold when there is one, else dlib's 0.6."""

    def __init__(self, db: str, store: Optional[str] = None):
        from facelab.gallery.service import GalleryService

        try:
            run = ModelStore(paths.store_uri(store)).load("verify")
            self.service = GalleryService.from_verify_model(db, run.model_dir)
        except FacelabError:
            self.service = GalleryService(db)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.service, method)(*args, **kwargs)


# The helpers come before the ingress class: @serve.ingress serialises the app when the class is defined.
async def _payload(request: Request) -> dict:
    """The request body as a dict: JSON as is; multipart files as base64 text, fields JSON-decoded."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _form(request)
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise HTTPException(422, "the JSON body must be an object")
    return payload


async def _form(request: Request) -> dict:
    try:
        form = await request.form(max_part_size=MAX_BODY_BYTES)
    except Exception as exc:  # malformed multipart
        raise HTTPException(400, f"malformed multipart body: {exc}") from None
    payload: dict = {}
    for key in set(form.keys()):
        values = []
        for value in form.getlist(key):
            if hasattr(value, "read"):  # an uploaded file
                values.append(base64.b64encode(await value.read()).decode("ascii"))
            else:
                try:
                    values.append(json.loads(value))
                except json.JSONDecodeError:
                    values.append(value)
        payload[key] = values if len(values) > 1 or key == "images" else values[0]
    return payload


def _validate(schema: type[BaseModel], payload: dict) -> BaseModel:
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise HTTPException(422, json.loads(exc.json(include_url=False, include_input=False))) from None


def _decode(image, field: str) -> np.ndarray:
    if not isinstance(image, str):
        raise HTTPException(422, f"field '{field}': an image is a file upload or base64 text")
    try:
        return decode_image(image, field)
    except UploadError as exc:
        raise _http(exc) from None


def _http(exc: UploadError) -> HTTPException:
    return HTTPException(exc.status, {"field": exc.field, "reason": exc.reason})


async def _call(awaitable):
    """Await a deployment call; bad input found inside it (e.g. no face) is still a 4xx."""
    try:
        return await awaitable
    except UploadError as exc:
        raise _http(exc) from None
    except FacelabError as exc:
        raise HTTPException(422, str(exc)) from None


def _respond(result):
    if isinstance(result, Binary):
        return Response(content=result.data, media_type=result.media_type)
    return result


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, DeploymentHandle], gallery: Optional[DeploymentHandle] = None):
        self.models = models
        self.gallery = gallery

    @api.get("/", response_class=HTMLResponse)
    async def index(self) -> str:
        from serve.page import render

        return render({name: get_task(name) for name in self.models}, gallery=self.gallery is not None)

    @api.get("/tasks")
    async def tasks(self) -> list[dict]:
        return list(await asyncio.gather(*(handle.info.remote() for handle in self.models.values())))

    # --- gallery (declared before the generic task routes so they win) --------------------------
    @api.get("/gallery/subjects")
    async def gallery_list(self) -> dict:
        return {"subjects": await self._gallery().call.remote("list")}

    @api.post("/gallery/subjects")
    async def gallery_enroll(self, request: Request) -> dict:
        payload = await _payload(request)
        images = payload.get("images") or ([payload["image"]] if "image" in payload else [])
        if not isinstance(images, list) or not images:
            raise HTTPException(422, "give one or more images as 'images' (list) or 'image'")
        subject = str(payload.get("subject_id") or payload.get("name") or "").strip()
        if not subject:
            raise HTTPException(422, "give 'subject_id' (or 'name')")
        decoded = [_decode(image, f"images[{i}]") for i, image in enumerate(images)]
        return await _call(self._gallery().call.remote("enroll", subject, str(payload.get("name") or subject), decoded))

    @api.delete("/gallery/subjects/{subject_id}")
    async def gallery_delete(self, subject_id: str) -> dict:
        if not await self._gallery().call.remote("delete", subject_id):
            raise HTTPException(404, f"no subject '{subject_id}' in the gallery")
        return {"deleted": subject_id}

    @api.post("/identify")
    async def identify(self, request: Request) -> dict:
        payload = await _payload(request)
        if "image" not in payload:
            raise HTTPException(422, "give the probe face as 'image'")
        try:
            k = int(payload.get("k", 5))
        except (TypeError, ValueError):
            raise HTTPException(422, "'k' must be an integer") from None
        if not 1 <= k <= 100:
            raise HTTPException(422, "'k' must be between 1 and 100")
        return await _call(self._gallery().call.remote("identify", _decode(payload["image"], "image"), k))

    def _gallery(self) -> DeploymentHandle:
        if self.gallery is None:
            raise HTTPException(404, "the gallery is not served by this application")
        return self.gallery

    # --- every task -------------------------------------------------------------------------------
    @api.post("/{task}")
    async def predict(self, task: str, request: Request):
        spec = self._spec(task)
        parsed = _validate(spec.Request, await _payload(request))
        try:
            rows, batched = spec.request_rows(parsed)
        except UploadError as exc:
            raise _http(exc) from None
        outputs = await _call(asyncio.gather(*(self.models[task].predict.remote(row) for row in rows)))
        try:
            return _respond(spec.response(list(outputs), batched))
        except UploadError as exc:  # e.g. no face found in one of the images
            raise _http(exc) from None

    @api.post("/{task}/{action}")
    async def act(self, task: str, action: str, request: Request):
        spec = self._spec(task)
        actions = getattr(spec, "actions", {})
        if action not in actions:
            raise HTTPException(404, f"task '{task}' has no action '{action}'; actions: {sorted(actions)}")
        parsed = _validate(actions[action], await _payload(request))
        return _respond(await _call(self.models[task].act.remote(action, parsed)))

    def _spec(self, task: str):
        if task not in self.models:
            raise HTTPException(404, f"no model served for task '{task}'; served: {sorted(self.models)}")
        return get_task(task)


def build_app(args: Optional[dict] = None):
    """Application builder for `serve run serve/config.yaml` (args: store, tasks, gallery).

    Without `tasks`, every task with a promoted model in the store is served. `gallery` is the
    SQLite file of the identification gallery (default $FACELAB_GALLERY or ~/.facelab/gallery.sqlite;
    `false` serves no gallery).
    """
    args = args or {}
    store = ModelStore(paths.store_uri(args.get("store")))
    tasks = args.get("tasks")
    if not tasks:
        tasks = []
        for name in task_names():
            try:
                store.promoted(name)
                tasks.append(name)
            except FacelabError:
                logger.warning("task %s has no promoted model in %s; not served", name, store.uri)
    gallery_db = args.get("gallery")
    gallery = None if gallery_db is False else GalleryModel.bind(str(paths.gallery_path(gallery_db)), store.uri)
    if not tasks and gallery is None:
        raise FacelabError(f"no task has a promoted model in store {store.uri}")
    return Gateway.bind({task: TaskModel.options(name=task).bind(task, store.uri) for task in tasks}, gallery)


def __getattr__(name: str):
    """`serve.app:app`, the application with the default args, for commands that take an import
    path to an Application rather than a builder (`serve build serve.app:app -o serve_app.yaml`):
    built when first asked for, from the store $FACELAB_STORE names, so importing this module
    never reads a store."""
    if name == "app":
        return build_app({})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
