"""The typed API without Ray: the OpenAPI document of a gateway serving every registered task holds
each task's request body (and its actions'), its response, the gallery's bodies and the one error
shape, and every reference in it resolves."""

import pytest

from facelab.tasks import get_task, task_names


@pytest.fixture(scope="module")
def doc() -> dict:
    from serve.api import document
    from serve.app import api
    from serve.limits import image_fields

    tasks = {name: get_task(name) for name in task_names()}
    uploads = {f"/{name}": bool(image_fields(task.Request)) for name, task in tasks.items()}
    return document(api, tasks, gallery=True, uploads=uploads)


def _resolve(doc: dict, ref: str) -> dict:
    assert ref.startswith("#/components/schemas/"), ref
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("name", task_names())
def test_every_task_has_its_route_request_and_response(doc, name):
    task = get_task(name)
    post = doc["paths"][f"/{name}"]["post"]
    body = _resolve(doc, post["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert set(task.Request.model_json_schema()["properties"]) == set(body["properties"])
    answer = post["responses"]["200"]["content"]
    assert ("application/json" in answer) == (task.Answer is not None)
    assert _resolve(doc, post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"])["title"] == "ErrorResponse"
    for action, schema in task.actions.items():
        action_body = doc["paths"][f"/{name}/{action}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(_resolve(doc, action_body["$ref"])["properties"]) == set(schema.model_json_schema()["properties"])


def test_image_routes_take_multipart_and_json_routes_do_not(doc):
    assert "multipart/form-data" in doc["paths"]["/detect"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" not in doc["paths"]["/sentiment"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in doc["paths"]["/gallery/subjects"]["post"]["requestBody"]["content"]


def test_gallery_routes_keys_and_every_reference_resolves(doc):
    assert {"/gallery/subjects", "/identify", "/gallery/subjects/{subject_id}", "/tasks", "/healthz"} <= set(doc["paths"])
    assert doc["paths"]["/gallery/subjects"]["post"]["x-facelab-role"] == "admin"
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for ref in set(_refs(doc)):
        _resolve(doc, ref)
    assert "/{task}" not in doc["paths"]  # the generic handler is not a documented route
