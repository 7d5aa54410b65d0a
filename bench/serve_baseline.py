"""The baseline of bench/serve_load.py: what a user would otherwise write to serve a facelab model,
one uvicorn process with the same predictor answering one request at a time.

    BENCH_STORE=/path/to/store python -m uvicorn --app-dir bench serve_baseline:app --port 8100

It decodes and answers exactly as a facelab model replica does (the task's request model, its
`request_rows`, its batch predictor over one request's rows, its `response`), so both sides give the
same answers; what it lacks is the Serve graph: replicas, batching across requests, the gateway.
"""

import os

from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError

from facelab.predict import predict_rows
from facelab.store import ModelStore
from facelab.tasks import get_task

app = FastAPI()
_models: dict = {}


def _model(name: str):
    if name not in _models:
        task = get_task(name)
        run = ModelStore(os.environ["BENCH_STORE"]).load(name)
        _models[name] = (task, task.predictor_class(str(run.model_dir)))
    return _models[name]


@app.post("/{name}")
async def answer(name: str, request: Request):
    # async and blocking on purpose: one request at a time, as a plain single-process server runs
    task, predictor = _model(name)
    try:
        parsed = task.Request.model_validate(await request.json())
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from None
    rows, batched = task.request_rows(parsed)
    return task.response(predict_rows(predictor, rows), batched)
