"""The Serve application over HTTP, secured and budgeted (issue 19): one app per module (sentiment,
fitted in seconds, plus the gallery) with API keys set.

The proxy listens on the loopback only by default; each route answers 401 without a key and 200 with
one; admin routes refuse a read-only key; a cross-site text/plain POST gets 415; /openapi.json holds
the served task's request schema; every limit is a 4xx naming it; a few hundred malformed bodies at
every route find no 5xx and the service keeps answering; errors have one JSON shape."""

import collections
import io
import json
import socket

import httpx
import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facelab.formats.sentiment import LABELS

READ_KEY, ADMIN_KEY = "read-key-" + "r" * 24, "admin-key-" + "a" * 24
READ, ADMIN = {"Authorization": f"Bearer {READ_KEY}"}, {"X-API-Key": ADMIN_KEY}
LIMITS = {"max_body_bytes": 1_000_000, "max_json_depth": 16, "max_number_chars": 40, "max_images": 4,
          "max_image_bytes": 500_000, "max_image_pixels": 25_000_000, "max_total_pixels": 30_000_000}
STATUSES = collections.Counter()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(width, height, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(ray_local, sentiment_data, tmp_path_factory):
    from ray import serve

    from facelab.train import train
    from jobs.common import SERVE_CONFIG
    from jobs.serve import resolve_config
    from serve.app import build_app

    store = str(tmp_path_factory.mktemp("serve-store"))
    config = {"model": "logreg", "ensemble_folds": 2}
    train("sentiment", sentiment_data, store, config=config, promote=False)  # promoted while serving, below
    train("sentiment", sentiment_data, store, config=config, promote=True)
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(f"{READ_KEY}\nadmin:{ADMIN_KEY}\n")
    host = resolve_config(SERVE_CONFIG, environ={})["http_options"]["host"]  # what `facelab serve` would bind
    port = _free_port()
    serve.start(http_options={"host": host, "port": port})
    gallery = tmp_path_factory.mktemp("gallery") / "gallery.sqlite"
    serve.run(build_app({"store": store, "tasks": ["sentiment"], "gallery": str(gallery), "api_keys_file": str(keys),
                         "limits": LIMITS, "task_deployments": {"sentiment": {"num_replicas": 2}}}),
              name="facelab", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def embeddings(sentiment_data):
    return [json.loads(t) for t in pd.read_csv(sentiment_data / "test.csv")["embeddings"].head(16)]


def _shaped(answer: httpx.Response) -> dict:
    """The one error shape."""
    error = answer.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and "field" in error, answer.text
    return error


# --- secure by default ------------------------------------------------------------------------------

def test_the_proxy_listens_on_the_loopback_only(service):
    port = int(service.rsplit(":", 1)[1])
    listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {"127.0.0.1"}, listening


def test_every_route_needs_a_key(client, embeddings, data_root):
    face = (data_root / "orl_faces" / "s1" / "1.pgm").read_bytes()
    routes = [("GET", "/tasks", {}), ("POST", "/sentiment", {"json": {"embedding": embeddings[0]}}),
              ("POST", "/sentiment", {"json": {"embeddings": embeddings[:3]}}),
              ("POST", "/gallery/subjects", {"files": {"images": ("1.pgm", face)}, "data": {"subject_id": "s1"}}),
              ("GET", "/gallery/subjects", {}),
              ("POST", "/identify", {"files": {"image": ("1.pgm", face)}, "data": {"k": "1"}}),
              ("DELETE", "/gallery/subjects/s1", {})]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"}, {"X-API-Key": READ_KEY[:-1]}):
            refused = client.request(method, path, headers=headers, **body)
            assert refused.status_code == 401 and _shaped(refused)["code"] == "unauthorized", (path, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
        answer = client.request(method, path, headers=ADMIN, **body)
        assert answer.status_code == 200, (method, path, answer.text)
    for path in ("/", "/healthz", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_admin_routes_refuse_a_read_only_key(client, embeddings):
    assert client.post("/sentiment", json={"embedding": embeddings[0]}, headers=READ).status_code == 200
    assert client.get("/tasks", headers=READ).status_code == 200
    for method, path, body in [("POST", "/gallery/subjects", {"json": {"subject_id": "x", "image": "aGk="}}),
                               ("GET", "/gallery/subjects", {}), ("DELETE", "/gallery/subjects/x", {})]:
        refused = client.request(method, path, headers=READ, **body)
        assert refused.status_code == 403 and "admin" in _shaped(refused)["message"], refused.text


def test_a_cross_site_text_plain_post_gets_415(client, embeddings, service):
    form_post = client.post("/sentiment", content=json.dumps({"embedding": embeddings[0]}),
                            headers={**READ, "content-type": "text/plain", "origin": "https://evil.example"})
    assert form_post.status_code == 415 and _shaped(form_post)["code"] == "unsupported_media_type"
    # JSON from another site (a browser would have to preflight it) is refused too; from this page it is not
    other = client.post("/sentiment", json={"embedding": embeddings[0]}, headers={**READ, "origin": "https://evil.example"})
    assert other.status_code == 403
    assert client.post("/sentiment", json={"embedding": embeddings[0]}, headers={**READ, "origin": service}).status_code == 200
    # a JSON-only route takes no multipart
    assert client.post("/sentiment", files={"embedding": ("e.json", b"[]")}, headers=READ).status_code == 415


def test_tasks_shows_every_replica_and_the_run_it_serves(client):
    from facelab.store import ModelStore

    served = client.get("/tasks", headers=READ).json()
    assert [s["task"] for s in served] == ["sentiment"] and "store" in served[0]
    replicas = served[0]["replicas"]
    assert len({r["replica"] for r in replicas}) == 2 and served[0]["replicas_unanswered"] == 0
    store = ModelStore(served[0]["store"])
    assert {r["run_id"] for r in replicas} == {served[0]["run_id"]} == {store.promoted("sentiment")}


def test_a_promotion_reaches_no_replica_until_it_is_rolled_out(client, facelab_cli):
    """Replicas serve the run resolved when the app was built: promoting another run mixes nothing,
    and `facelab promote` says how to roll it out."""
    from facelab.store import ModelStore

    served = client.get("/tasks", headers=READ).json()[0]
    store = ModelStore(served["store"])
    other = next(m["run_id"] for m in store.scan("sentiment")[0] if m["run_id"] != served["run_id"])
    said = facelab_cli("promote", "--task", "sentiment", "--run", other, "--store", store.uri)
    assert said["promoted"] == other and "serve deploy" in said["rollout"]
    try:
        after = client.get("/tasks", headers=READ).json()[0]
        assert {r["run_id"] for r in after["replicas"]} == {served["run_id"]}
    finally:
        store.promote("sentiment", served["run_id"])


# --- typed API -------------------------------------------------------------------------------------

def test_openapi_has_the_served_task_request_schema(client):
    doc = client.get("/openapi.json").json()
    ref = doc["paths"]["/sentiment"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert {"embedding", "embeddings"} <= set(doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])
    assert "/detect" not in doc["paths"]  # only what is served
    assert "swagger" in client.get("/docs").text.lower()


def test_single_and_batch(client, embeddings):
    one = client.post("/sentiment", json={"embedding": embeddings[0]}, headers=READ)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["label"] in LABELS and sum(body["probabilities"].values()) == pytest.approx(1.0)
    many = client.post("/sentiment", json={"embeddings": embeddings}, headers=READ).json()["predictions"]
    assert len(many) == 16 and many[0] == body


def test_concurrent_requests_are_batched_consistently(service, embeddings):
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda e: httpx.post(f"{service}/sentiment", json={"embedding": e}, headers=READ,
                                                     timeout=60).json(), embeddings))
    batch = httpx.post(f"{service}/sentiment", json={"embeddings": embeddings}, headers=READ, timeout=60).json()["predictions"]
    assert [a["label"] for a in answers] == [b["label"] for b in batch]
    batches = [r["batches"] for r in httpx.get(f"{service}/tasks", headers=READ).json()[0]["replicas"]]
    assert sum(b["rows"] for b in batches) >= 2 * len(embeddings)  # every row counted, in some replica
    assert max(b["largest"] for b in batches) > 1  # rows of concurrent requests (and a batch request) batched


def test_a_killed_replica_loses_no_request(service, embeddings, ray_local):
    """Two replicas, one killed (`ray.kill` of its actor, as Serve's fault-tolerance guide does) under
    concurrent requests: the gateway retries the lost predictions once, so every request gets its
    answer, and Serve starts a replacement."""
    import concurrent.futures as cf
    import threading
    import time

    replicas = [name["name"] for name in ray_local.util.list_named_actors(all_namespaces=True)
                if name["name"].startswith("SERVE_REPLICA::facelab#sentiment#")]
    assert len(replicas) == 2, replicas
    statuses, done = [], threading.Event()

    def load():
        with httpx.Client(base_url=service, timeout=60, headers=READ) as c:
            while not done.is_set():
                statuses.append(c.post("/sentiment", json={"embeddings": embeddings}).status_code)

    with cf.ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(load) for _ in range(4)]
        while len(statuses) < 20:
            time.sleep(0.05)
        ray_local.kill(ray_local.get_actor(replicas[0], namespace="serve"), no_restart=True)
        killed_at = len(statuses)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_running(service)) < 2:
            time.sleep(0.5)
        time.sleep(1)
        done.set()
        [c.result() for c in clients]
    assert len(statuses) > killed_at + 8
    assert collections.Counter(statuses) == {200: len(statuses)}
    assert len(_running(service)) == 2 and replicas[0] not in [f"SERVE_REPLICA::facelab#sentiment#{r}" for r in _running(service)]


def _running(service) -> list[str]:
    answer = httpx.get(f"{service}/tasks", headers=READ, timeout=60).json()[0]
    return [r["replica"] for r in answer["replicas"]]


# --- budgets, never a 500 --------------------------------------------------------------------------

@pytest.mark.parametrize("body, status, field_or_limit", [
    ('{"embedding": [1.0, 2.0]}', 422, "embedding"),
    ('{"embedding": [' + ", ".join(["NaN"] * 512) + "]}", 422, None),
    ('{"embedding": [' + ", ".join(['"a"'] * 512) + "]}", 422, "embedding.0"),
    ('{"embeddings": [[1.0]]}', 422, None),
    ('{"vector": []}', 422, "vector"),
    ('{"embedding": [1.0', 400, None),
    ("\xff\xfe", 400, None),
    ("[1, 2]", 422, None),
    ('{"embedding": [' + "9" * 5000 + "]}", 422, "max_number_chars"),
    ('{"embedding": ' + "[" * 50_000 + "]" * 50_000 + "}", 422, "max_json_depth"),
])
def test_malformed_input_is_4xx_and_service_survives(client, embeddings, body, status, field_or_limit):
    answer = client.post("/sentiment", content=body.encode("latin-1"),
                         headers={**READ, "content-type": "application/json"})
    assert answer.status_code == status, answer.text
    error = _shaped(answer)
    assert field_or_limit in (None, error["field"], error.get("limit")), error
    assert client.post("/sentiment", json={"embedding": embeddings[0]}, headers=READ).status_code == 200


def test_extreme_finite_numbers_are_answered_or_refused_never_500(client):
    for value in ("1e308", "-1e308", "5e-324", "123456789012345678901234567890"):
        answer = client.post("/sentiment", content=('{"embedding": [' + ", ".join([value] * 512) + "]}").encode(),
                             headers={**READ, "content-type": "application/json"})
        assert answer.status_code in (200, 422), (value, answer.text)


def test_body_limit_holds_for_declared_and_chunked_bodies(client, embeddings):
    big = b'{"embeddings": [' + b",".join([json.dumps(embeddings[0]).encode()] * 300) + b"]}"
    assert len(big) > LIMITS["max_body_bytes"]
    declared = client.post("/sentiment", content=big, headers={**READ, "content-type": "application/json"})
    assert declared.status_code == 413 and _shaped(declared)["limit"] == "max_body_bytes"

    def chunks():  # no Content-Length: Transfer-Encoding chunked
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    chunked = client.post("/sentiment", content=chunks(), headers={**READ, "content-type": "application/json"})
    assert chunked.status_code == 413 and _shaped(chunked)["limit"] == "max_body_bytes"
    assert client.post("/sentiment", json={"embedding": embeddings[0]}, headers=READ).status_code == 200


@pytest.mark.parametrize("images, limit", [
    ([_png(8, 8)] * 5, "max_images"),
    ([_png(5000, 5000, mode="1")] * 2, "max_total_pixels"),  # 50 Mpixel from two small files
    ([_png(6000, 6000, mode="1")], "max_image_pixels"),
])
def test_image_budgets_are_413_naming_the_limit(client, images, limit):
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    answer = client.post("/gallery/subjects", files=files, data={"subject_id": "bomb"}, headers=ADMIN)
    assert answer.status_code == 413 and _shaped(answer)["limit"] == limit, answer.text
    assert client.get("/healthz").status_code == 200


ROUTES = [("POST", "/sentiment"), ("POST", "/identify"), ("POST", "/gallery/subjects"), ("GET", "/gallery/subjects"),
          ("DELETE", "/gallery/subjects/nobody"), ("GET", "/tasks"), ("POST", "/sentiment/aggregate"),
          ("POST", "/nope"), ("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/")]
CONTENT_TYPES = ["application/json"] * 4 + ["multipart/form-data; boundary=xyz"] * 2 + ["text/plain", "application/x-www-form-urlencoded",
                 "application/json; charset=utf-16", "", "image/png"]
def _multipart(parts) -> bytes:
    """A multipart/form-data body (boundary xyz) of (name, value, as a file) parts."""
    out = b""
    for name, value, is_file in parts:
        filename = b'; filename="f.png"' if is_file else b""
        out += b'--xyz\r\nContent-Disposition: form-data; name="' + name.encode() + b'"' + filename + b"\r\n\r\n" + value + b"\r\n"
    return out + b"--xyz--\r\n"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                     max_leaves=30)
_fields = st.fixed_dictionaries({}, optional={
    "embedding": st.lists(st.floats(), min_size=510, max_size=514) | _json
    | st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=512, max_size=512),
    "embeddings": st.lists(st.lists(st.floats(width=32), min_size=512, max_size=512), max_size=2) | _json,
    "image": st.sampled_from(["", "aGk=", "%%%", "data:image/png;base64,AAAA"]) | st.binary(max_size=64).map(
        lambda b: __import__("base64").b64encode(b).decode()) | _json,
    "images": st.lists(st.just("iVBORw0KGgo="), max_size=6) | _json,
    "subject_id": _json, "name": _json, "k": _json})
_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    _fields.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda n: b'{"embedding": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 3000).map(lambda n: b'{"k": ' + b"7" * n + b"}"),
    st.tuples(_fields.map(lambda v: json.dumps(v).encode()), st.integers(0, 200)).map(lambda t: t[0][:t[1]]),
    st.lists(st.tuples(st.sampled_from(["image", "images", "k", "subject_id", "embedding", "x"]),
                       st.binary(max_size=40) | _json.map(lambda v: json.dumps(v).encode()),
                       st.booleans()), max_size=4).map(_multipart),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES[:3] * 3 + ROUTES), body=_bodies, content_type=st.sampled_from(CONTENT_TYPES),
       key=st.sampled_from([ADMIN] * 3 + [READ, {}]))
def test_fuzz_finds_no_5xx(client, route, body, content_type, key):
    method, path = route
    headers = {**key, **({"content-type": content_type} if content_type else {})}
    answer = client.request(method, path, content=body if method != "GET" else None, headers=headers)
    STATUSES[answer.status_code] += 1
    assert answer.status_code < 500, (method, path, body[:200], answer.text[:500])
    if answer.status_code >= 400:
        _shaped(answer)


def test_after_the_fuzz_the_service_still_answers(client, embeddings):
    print(f"fuzz statuses: {dict(sorted(STATUSES.items()))}")
    assert sum(STATUSES.values()) >= 300 or not STATUSES
    assert client.post("/sentiment", json={"embedding": embeddings[0]}, headers=READ).status_code == 200
    assert client.get("/tasks", headers=READ).status_code == 200
