"""The facelab Serve application: one HTTP gateway composed over one model deployment per task.

    app = Gateway.bind({task: TaskModel.options(name=task).bind(task, store) for task in tasks},
                       GalleryModel.bind(gallery_db), settings)

The gateway only authenticates, checks content types and sizes, validates bodies against the task's
request model and routes them; decoding, face detection and the models run in the model replicas
(`TaskModel.answer`, `GalleryModel`), where each task's own batch predictor (the class the batch
jobs use) answers rows batched by `@serve.batch`.

Security (facelab.access): with API keys configured (`$FACELAB_API_KEYS`, or a keys file), every
route but `/`, `/healthz`, `/docs` and `/openapi.json` needs `Authorization: Bearer <key>` or
`X-API-Key: <key>` (401 without a known key); enrolment, deletion and the gallery listing need an
admin key (403 for a read-only one). A JSON route takes only `application/json` (415 otherwise, which
stops cross-site form posts); a route that takes images also takes `multipart/form-data`. A request
whose `Origin` is another site is refused (403).

Budgets (serve/limits.py, `args.limits` in serve/config.yaml): body bytes while streaming, JSON depth
and number size, images and pixels per request; each gives a 4xx naming the limit. Every error has
one JSON shape, `{"error": {"code", "message", "field"[, "limit"]}}`.
"""


import asyncio
import base64
import json
import logging
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from facelab import config as paths
from facelab.access import ADMIN, READ, ApiKeys, load_keys, redact_text, redact_uri
from facelab.errors import FacelabError
from facelab.predict import predict_rows
from facelab.store import ModelStore
from facelab.tasks import get_task, task_names
from facelab.uploads import Binary, UploadError, decode_image
from serve.api import EnrollRequest, IdentifyRequest, document
from serve.limits import ApiError, Limits, check_images, image_fields, parse_json, read_body, replay

logger = logging.getLogger("ray.serve")
DEFAULT_LIMITS = Limits()
MAX_BODY_BYTES = DEFAULT_LIMITS.max_body_bytes
OPEN_PATHS = ("/", "/healthz", "/docs", "/openapi.json")

api = FastAPI(title="facelab", description="Face analysis models served from the facelab model store.",
              openapi_url=None, docs_url=None, redoc_url=None)


# --- one error shape -------------------------------------------------------------------------------
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "too_large", 415: "unsupported_media_type", 422: "invalid_request", 504: "timeout"}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error of `app` in the one JSON shape (the gateway's, and test apps over its helpers)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(ApiError(exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(ApiError(422, "invalid_request", str(exc.errors()[:3])))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):  # a bug, never bad input: logged, answered in the shape
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.__class__.__name__, exc_info=exc)
        return error_response(ApiError(500, "internal", "internal error; the gateway's log has the details"))


install_error_handlers(api)


# Small CPU reservations: a graph of every task (13 models, the gallery and the gateway) must
# fit on a laptop; replicas idle between requests. Raise them per deployment in serve/config.yaml.
@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class TaskModel:
    """The promoted model of one task behind its batch predictor: requests are decoded here (not in
    the gateway) and their rows batched across concurrent requests."""

    def __init__(self, task: str, store: Optional[str] = None, run_id: Optional[str] = None):
        self.task = get_task(task)
        uri = paths.store_uri(store)
        try:  # run_id: the run build_app resolved, so every replica of the task serves the same one
            run = ModelStore(uri).load(task, run_id, check_config=self.task.config)
        except FacelabError as exc:  # the store URI may carry credentials: never log them
            raise FacelabError(redact_text(str(exc), [uri, store])) from None
        self.run_id, self.store = run.run_id, redact_uri(uri)
        self.predictor = self.task.predictor_class(str(run.model_dir))
        self.batches = BatchSizes(task)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def predict(self, rows: list[dict]) -> list[dict]:
        self.batches.observe(len(rows))
        return predict_rows(self.predictor, rows)

    async def answer(self, request: BaseModel):
        """A validated request: decoded into rows (images, face crops) off the event loop, each row
        batched with other requests' rows, then shaped as the task's response."""
        rows, batched = await asyncio.to_thread(self.task.request_rows, request)
        outputs = await asyncio.gather(*(self.predict(row) for row in rows))
        answer = self.task.response(list(outputs), batched)
        if not isinstance(answer, Binary):
            try:  # e.g. 1e308 in every field of an embedding: the model's answer overflows
                json.dumps(answer, allow_nan=False, default=str)
            except ValueError:
                raise UploadError(422, "body", "the input gives no finite answer (values out of the model's range)") from None
        return answer

    async def act(self, action: str, request: BaseModel) -> dict:
        """An unbatched extra endpoint, `POST /<task>/<action>`."""
        return await asyncio.to_thread(getattr(self.predictor, action.replace("-", "_")), request)

    def info(self) -> dict:
        return {"task": self.task.name, "run_id": self.run_id, "store": self.store,
                "replica": serve.get_replica_context().replica_tag, "actions": sorted(self.task.actions),
                "batches": self.batches.summary()}


class BatchSizes:
    """The sizes of the batches `@serve.batch` formed in one replica: a Serve metric
    (`facelab_batch_size`, a histogram per task, on Ray's metrics endpoint) and a summary for `/tasks`."""

    BOUNDARIES = [1, 2, 4, 8, 16, 32, 64]

    def __init__(self, task: str):
        from ray.serve.metrics import Histogram

        self.count = self.rows = self.largest = 0
        self.histogram = Histogram("facelab_batch_size", description="rows per batch formed by @serve.batch",
                                   boundaries=self.BOUNDARIES, tag_keys=("task",))
        self.histogram.set_default_tags({"task": task})

    def observe(self, size: int) -> None:
        self.count, self.rows, self.largest = self.count + 1, self.rows + size, max(self.largest, size)
        self.histogram.observe(size)

    def summary(self) -> dict:
        return {"count": self.count, "rows": self.rows, "largest": self.largest,
                "mean": round(self.rows / self.count, 2) if self.count else None}


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

    async def enroll(self, request: EnrollRequest) -> dict:
        def work():
            images = [decode_image(image, f"images[{i}]") for i, image in enumerate(request.all_images)]
            return self.service.enroll(request.subject, request.name or request.subject, images)
        return await asyncio.to_thread(work)

    async def identify(self, request: IdentifyRequest) -> dict:
        return await asyncio.to_thread(lambda: self.service.identify(decode_image(request.image, "image"), request.k))

    def call(self, method: str, *args, **kwargs):
        return getattr(self.service, method)(*args, **kwargs)


# The helpers come before the ingress class: @serve.ingress serialises the app when the class is defined.
def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_media(request: Request, schema: Optional[type[BaseModel]]) -> bool:
    """415 unless the body is JSON, or multipart where the route takes images (`schema` None: any
    route); whether it is multipart."""
    media = _media_type(request)
    uploads = schema is None or bool(image_fields(schema))
    multipart = media == "multipart/form-data" and uploads
    if not (multipart or media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        takes = "application/json" + (" or multipart/form-data" if uploads else "")
        raise ApiError(415, "unsupported_media_type", f"content type '{media or 'none'}' is not accepted; send {takes}")
    return multipart


async def _payload(request: Request, schema: Optional[type[BaseModel]] = None, limits: Limits = DEFAULT_LIMITS) -> dict:
    """The request body as a dict, under the limits: JSON as is; multipart (only where `schema`
    takes images, or any multipart without a schema) with files as base64 text, fields JSON-decoded."""
    multipart = _check_media(request, schema)
    body = await read_body(request, limits)
    payload = await _form(replay(request, body), limits) if multipart else parse_json(body, limits)
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_request", "the JSON body must be an object")
    if schema is not None:
        check_images(payload, schema, limits)
    return payload


async def _form(request: Request, limits: Limits) -> dict:
    try:
        form = await request.form(max_part_size=limits.max_body_bytes, max_files=limits.max_images + 8)
    except Exception as exc:  # malformed multipart: the parser's own error types vary by version
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from None
    payload: dict = {}
    for key in set(form.keys()):
        values = []
        for value in form.getlist(key):
            if hasattr(value, "read"):  # an uploaded file
                values.append(base64.b64encode(await value.read()).decode("ascii"))
            else:
                try:
                    values.append(parse_json(value.encode("utf-8", "surrogatepass"), limits))
                except ApiError as exc:
                    if exc.code != "invalid_json":
                        raise
                    values.append(value)
        payload[key] = values if len(values) > 1 or key == "images" else values[0]
    return payload


def _validate(schema: type[BaseModel], payload: dict) -> BaseModel:
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise ApiError(422, "invalid_request", message, field=field) from None


def _upload_error(exc: UploadError) -> ApiError:
    code = {413: "too_large", 415: "not_an_image"}.get(exc.status, "invalid_request")
    return ApiError(exc.status, code, exc.reason, field=exc.field)


# A replica that dies under a request (node lost, actor killed) fails it with one of these; Serve
# starts a replacement and routes the next call elsewhere.
REPLICA_LOST = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


async def _call(awaitable, timeout: Optional[float], again: Optional[Callable[[], Any]] = None):
    """Await a deployment call under the request timeout; bad input found inside it (not an image,
    no face) is still a 4xx naming the field. `again` makes the call anew: given for idempotent
    calls (predictions), which are retried once when their replica was lost."""
    try:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except REPLICA_LOST as exc:
            if again is None:
                raise ApiError(503, "unavailable", "the model's replica was lost; try again") from None
            logger.warning("a replica was lost under a request (%s); retrying it once", type(exc).__name__)
            return await asyncio.wait_for(again(), timeout)
    except REPLICA_LOST:
        raise ApiError(503, "unavailable", "the model's replicas were lost twice; try again") from None
    except UploadError as exc:
        raise _upload_error(exc) from None
    except FacelabError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    except asyncio.TimeoutError:
        raise ApiError(504, "timeout", f"no answer within the request timeout of {timeout} s") from None


async def _replicas(task: str, handle: DeploymentHandle) -> dict:
    """Ask every running replica of a task what it serves (DeploymentHandle.broadcast, a public alpha
    API in Ray 2.60): its run id and the batch sizes it formed."""
    answers = await handle.broadcast("info").results_async(timeout_s=30, return_exceptions=True)
    replicas = [a for a in answers if isinstance(a, dict)]
    if not replicas:
        raise ApiError(503, "unavailable", f"no replica of task '{task}' answered")
    runs = sorted({a["run_id"] for a in replicas})
    first = replicas[0]
    return {"task": task, "run_id": runs[0] if len(runs) == 1 else runs, "store": first["store"],
            "actions": first["actions"], "replicas_unanswered": len(answers) - len(replicas),
            "replicas": sorted(({"replica": a["replica"], "run_id": a["run_id"], "batches": a["batches"]}
                                for a in replicas), key=lambda r: r["replica"])}


def _respond(result):
    if isinstance(result, Binary):
        return Response(content=result.data, media_type=result.media_type)
    return result


def _same_origin(request: Request) -> bool:
    """No Origin header (not a browser's cross-site request), or one naming this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class Gateway:
    """Routes, authenticates and checks sizes; the work runs in the model deployments."""

    def __init__(self, models: dict[str, DeploymentHandle], gallery: Optional[DeploymentHandle] = None,
                 settings: Optional[dict] = None):
        settings = settings or {}
        self.models = models
        self.gallery = gallery
        self.keys: ApiKeys = settings.get("keys") or ApiKeys()
        self.limits = Limits.model_validate(settings.get("limits") or {})
        self.timeouts: dict[str, float] = settings.get("timeouts") or {}
        self.specs = {name: get_task(name) for name in models}

    def _authorize(self, request: Request, role: str = READ) -> None:
        """401 without a known key, 403 when the key's role may not do this or a change comes from another site."""
        self._check_key(request, role)
        self._check_origin(request)

    @staticmethod
    def _check_origin(request: Request) -> None:
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            raise ApiError(403, "forbidden", "cross-origin request refused")

    def _check_key(self, request: Request, role: str) -> None:
        if not self.keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        presented = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key")
        granted = self.keys.role(presented)
        if granted is None:
            raise ApiError(401, "unauthorized", "an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                           headers={"WWW-Authenticate": "Bearer"})
        if role == ADMIN and granted != ADMIN:
            raise ApiError(403, "forbidden", "this route needs an admin key; the key given is read-only")

    async def _body(self, request: Request, schema: type[BaseModel], role: str = READ) -> BaseModel:
        self._check_key(request, role)
        _check_media(request, schema)  # a cross-site form post is refused for its content type (415)
        self._check_origin(request)
        return _validate(schema, await _payload(request, schema, self.limits))

    def _timeout(self, name: str) -> Optional[float]:
        return self.timeouts.get(name, self.timeouts.get("default"))

    # --- open routes ------------------------------------------------------------------------------
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(self) -> str:
        from serve.page import render

        return render(self.specs, gallery=self.gallery is not None)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self) -> dict:
        uploads = {f"/{name}": bool(image_fields(spec.Request)) for name, spec in self.specs.items()}
        uploads |= {f"/{name}/{action}": bool(image_fields(schema))
                    for name, spec in self.specs.items() for action, schema in spec.actions.items()}
        return document(api, self.specs, self.gallery is not None, uploads)

    @api.get("/docs", include_in_schema=False)
    async def docs(self) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title="facelab API")

    @api.get("/favicon.ico", include_in_schema=False)
    async def favicon(self) -> Response:
        return Response(status_code=204)

    # --- read routes ------------------------------------------------------------------------------
    @api.get("/tasks")
    async def tasks(self, request: Request) -> list[dict]:
        """The served models: per task, the run id and store (credentials redacted), and each running
        replica with the run it serves and the batch sizes it formed."""
        self._authorize(request)
        return list(await asyncio.gather(*(_replicas(task, handle) for task, handle in self.models.items())))

    # --- gallery (declared before the generic task routes so they win) --------------------------
    @api.get("/gallery/subjects")
    async def gallery_list(self, request: Request) -> dict:
        """Every enrolled subject (admin key)."""
        self._authorize(request, ADMIN)
        return {"subjects": await _call(self._gallery().call.remote("list"), self._timeout("gallery"))}

    @api.post("/gallery/subjects", include_in_schema=False)
    async def gallery_enroll(self, request: Request) -> dict:
        gallery = self._gallery()
        enroll = await self._body(request, EnrollRequest, ADMIN)
        return await _call(gallery.enroll.remote(enroll), self._timeout("gallery"))

    @api.delete("/gallery/subjects/{subject_id}")
    async def gallery_delete(self, subject_id: str, request: Request) -> dict:
        """Remove a subject and its faces (admin key)."""
        self._authorize(request, ADMIN)
        if not await _call(self._gallery().call.remote("delete", subject_id), self._timeout("gallery")):
            raise ApiError(404, "not_found", f"no subject '{subject_id}' in the gallery", field="subject_id")
        return {"deleted": subject_id}

    @api.post("/identify", include_in_schema=False)
    async def identify(self, request: Request) -> dict:
        gallery = self._gallery()
        probe = await self._body(request, IdentifyRequest)
        return await _call(gallery.identify.remote(probe), self._timeout("gallery"))

    def _gallery(self) -> DeploymentHandle:
        if self.gallery is None:
            raise ApiError(404, "not_found", "the gallery is not served by this application")
        return self.gallery

    # --- every task -------------------------------------------------------------------------------
    @api.post("/{task}", include_in_schema=False)
    async def predict(self, task: str, request: Request):
        spec = self._spec(task)
        parsed = await self._body(request, spec.Request)
        answer = lambda: self.models[task].answer.remote(parsed)  # noqa: E731
        return _respond(await _call(answer(), self._timeout(task), again=answer))

    @api.post("/{task}/{action}", include_in_schema=False)
    async def act(self, task: str, action: str, request: Request):
        spec = self._spec(task)
        if action not in spec.actions:
            raise ApiError(404, "not_found", f"task '{task}' has no action '{action}'; actions: {sorted(spec.actions)}")
        parsed = await self._body(request, spec.actions[action])
        return _respond(await _call(self.models[task].act.remote(action, parsed), self._timeout(task)))

    def _spec(self, task: str):
        if task not in self.specs:
            raise ApiError(404, "not_found", f"no model served for task '{task}'; served: {sorted(self.specs)}")
        return self.specs[task]


def build_app(args: Optional[dict] = None):
    """Application builder for `serve run serve/config.yaml`.

    args: `store`; `tasks` (default: every task with a promoted model in the store); `gallery`, the
    SQLite file of the identification gallery (default $FACELAB_GALLERY or ~/.facelab/gallery.sqlite;
    `false` serves no gallery); `api_keys_file` (keys also from $FACELAB_API_KEYS); `limits` (see
    serve/limits.py); `timeouts`, seconds per task (`default`, `gallery`); `task_deployments`,
    replicas and requests in flight per task deployment (`default`, or a task's name).
    """
    args = args or {}
    store = ModelStore(paths.store_uri(args.get("store")))
    shown = redact_uri(store.uri)
    tasks = args.get("tasks")
    if not tasks:
        tasks = []
        for name in task_names():
            try:
                store.promoted(name)
                tasks.append(name)
            except FacelabError:
                logger.warning("task %s has no promoted model in %s; not served", name, shown)
    gallery_db = args.get("gallery")
    gallery = None if gallery_db is False else GalleryModel.bind(str(paths.gallery_path(gallery_db)), store.uri)
    if not tasks and gallery is None:
        raise FacelabError(f"no task has a promoted model in store {shown}")
    settings: dict[str, Any] = {"keys": load_keys(args.get("api_keys_file")),
                                "limits": Limits.model_validate(args.get("limits") or {}).model_dump(),
                                "timeouts": dict(args.get("timeouts") or {})}
    logger.info("facelab gateway: %s tasks, %r, store %s", len(tasks), settings["keys"], shown)
    runs = {task: store.promoted(task) for task in tasks}  # resolved once: every replica serves the same run
    return Gateway.bind({task: TaskModel.options(name=task, **task_options(args, task)).bind(task, store.uri, runs[task])
                         for task in tasks}, gallery, settings)


DEPLOYMENT_OPTIONS = {"num_replicas", "max_ongoing_requests", "max_queued_requests", "autoscaling_config",
                      "ray_actor_options"}


def task_options(args: dict, task: str) -> dict:
    """A task deployment's options from `args.task_deployments`: `default`, updated by the task's own
    entry (a `deployments:` entry of the Serve config, by the task's name, still overrides both)."""
    given = args.get("task_deployments") or {}
    options = {**(given.get("default") or {}), **(given.get(task) or {})}
    unknown = set(options) - DEPLOYMENT_OPTIONS
    if unknown:
        raise FacelabError(f"task_deployments: unknown option(s) {sorted(unknown)}; options: {sorted(DEPLOYMENT_OPTIONS)}")
    if "autoscaling_config" in options:
        options.pop("num_replicas", None)
    return options


def __getattr__(name: str):
    """`serve.app:app`, the application with the default args, for commands that take an import
    path to an Application rather than a builder (`serve build serve.app:app -o serve_app.yaml`):
    built when first asked for, from the store $FACELAB_STORE names, so importing this module
    never reads a store."""
    if name == "app":
        return build_app({})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
