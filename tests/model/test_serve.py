"""The Serve application: sentiment answers, bad input gets a 4xx, and the service keeps serving."""

import json
import socket

import httpx
import pandas as pd
import pytest

from facelab.formats.sentiment import LABELS


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tuned_sentiment):
    from ray import serve

    from serve.app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"store": tuned_sentiment[0]}), name="facelab", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def embeddings(sentiment_data):
    return [json.loads(t) for t in pd.read_csv(sentiment_data / "test.csv")["embeddings"].head(16)]


def test_single_and_batch(service, embeddings):
    one = httpx.post(f"{service}/sentiment", json={"embedding": embeddings[0]}, timeout=60)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["label"] in LABELS and sum(body["probabilities"].values()) == pytest.approx(1.0)
    many = httpx.post(f"{service}/sentiment", json={"embeddings": embeddings}, timeout=60).json()["predictions"]
    assert len(many) == 16 and many[0] == body


def test_concurrent_requests_are_batched_consistently(service, embeddings):
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda e: httpx.post(f"{service}/sentiment", json={"embedding": e}, timeout=60).json(),
                                embeddings))
    batch = httpx.post(f"{service}/sentiment", json={"embeddings": embeddings}, timeout=60).json()["predictions"]
    assert [a["label"] for a in answers] == [b["label"] for b in batch]


@pytest.mark.parametrize("body, status", [
    ('{"embedding": [1.0, 2.0]}', 422),
    ('{"embedding": [' + ", ".join(["NaN"] * 512) + "]}", 422),
    ('{"embedding": [' + ", ".join(['"a"'] * 512) + "]}", 422),
    ('{"embeddings": [[1.0]]}', 422),
    ('{"vector": []}', 422),
    ('{"embedding": [1.0', 400),
    ("\xff\xfe", 400),
])
def test_malformed_input_is_rejected_and_service_survives(service, embeddings, body, status):
    answer = httpx.post(f"{service}/sentiment", content=body.encode("latin-1"),
                        headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == status, answer.text
    assert httpx.post(f"{service}/sentiment", json={"embedding": embeddings[0]}, timeout=60).status_code == 200


def test_oversized_body_is_413(service, embeddings):
    from serve.app import MAX_BODY_BYTES

    one = json.dumps(embeddings[0]).encode()
    huge = b'{"embeddings": [' + b",".join([one] * (MAX_BODY_BYTES // len(one) + 10)) + b"]}"
    assert len(huge) > MAX_BODY_BYTES
    assert httpx.post(f"{service}/sentiment", content=huge, timeout=60).status_code == 413
    assert httpx.post(f"{service}/sentiment", json={"embedding": embeddings[0]}, timeout=60).status_code == 200


def test_unknown_task_and_index(service):
    assert httpx.post(f"{service}/nope", json={}, timeout=60).status_code == 404
    assert "sentiment" in httpx.get(service, timeout=60).text
    assert httpx.get(f"{service}/tasks", timeout=60).json()[0]["task"] == "sentiment"
