"""The facelab Serve application: one HTTP gateway composed over one model deployment per task.

    app = Gateway.bind({task: TaskModel.options(name=task).bind(task, store) for task in tasks})

Each TaskModel loads its task's promoted run from the model store and runs the task's own batch
predictor (the class the batch jobs use) on requests batched by `@serve.batch`. The gateway
validates input with the task's request schema: malformed JSON is a 400, an oversized body a 413,
a schema violation (wrong length, NaN, not a number) a 422, an unknown task a 404.
"""


import asyncio
import json
import logging
from typing import Optional

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from facelab import config as paths
from facelab.errors import FacelabError
from facelab.store import ModelStore
from facelab.tasks import get_task, task_names

logger = logging.getLogger("ray.serve")
MAX_BODY_BYTES = 8 * 1024 * 1024

api = FastAPI(title="facelab", description="Face analysis models served from the facelab model store.")


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class TaskModel:
    """The promoted model of one task behind its batch predictor."""

    def __init__(self, task: str, store: Optional[str] = None):
        self.task = get_task(task)
        run = ModelStore(paths.store_uri(store)).load(task)
        self.run_id = run.run_id
        self.predictor = self.task.predictor_class(str(run.model_dir))

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def predict(self, rows: list[dict]) -> list[dict]:
        batch = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
        out = self.predictor(batch)
        return [{key: value[i] for key, value in out.items()} for i in range(len(rows))]

    def info(self) -> dict:
        return {"task": self.task.name, "run_id": self.run_id}


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, DeploymentHandle]):
        self.models = models

    @api.get("/", response_class=HTMLResponse)
    async def index(self) -> str:
        items = "".join(f"<li><code>POST /{t}</code></li>" for t in self.models)
        return (f"<!doctype html><title>facelab</title><h1>facelab</h1><p>Served tasks:</p><ul>{items}</ul>"
                f"<p>Schemas and a form for every endpoint: <a href='docs'>/docs</a></p>")

    @api.get("/tasks")
    async def tasks(self) -> list[dict]:
        return list(await asyncio.gather(*(handle.info.remote() for handle in self.models.values())))

    @api.post("/{task}")
    async def predict(self, task: str, request: Request) -> dict:
        if task not in self.models:
            raise HTTPException(404, f"no model served for task '{task}'; served: {sorted(self.models)}")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"body is not valid JSON: {exc}") from None
        spec = get_task(task)
        try:
            parsed = spec.Request.model_validate(payload)
        except ValidationError as exc:
            raise HTTPException(422, json.loads(exc.json(include_url=False, include_input=False))) from None
        rows, batched = spec.request_rows(parsed)
        outputs = await asyncio.gather(*(self.models[task].predict.remote(row) for row in rows))
        return spec.response(list(outputs), batched)


def build_app(args: Optional[dict] = None):
    """Application builder for `serve run serve/config.yaml` (args: store, tasks).

    Without `tasks`, every task with a promoted model in the store is served.
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
    if not tasks:
        raise FacelabError(f"no task has a promoted model in store {store.uri}")
    return Gateway.bind({task: TaskModel.options(name=task).bind(task, store.uri) for task in tasks})
