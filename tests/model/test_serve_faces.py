"""Serve with image endpoints on real faces: detect, verify, crowd and the gallery answer over HTTP,
every bad upload gets a clear 4xx naming the field, and the service keeps serving afterwards."""

import io
import socket

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.realdata


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _orl(data_root, person, index) -> bytes:
    return (data_root / "orl_faces" / f"s{person}" / f"{index}.pgm").read_bytes()


def _png(width, height, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def crowd_dir(data_root, tmp_path_factory):
    return _crowd(data_root, tmp_path_factory)


def _crowd(data_root, tmp_path_factory):
    """One real crowd (100 ORL/UTKFace tiles), built once per module."""
    from facelab.converters import convert

    out = tmp_path_factory.getbasetemp() / "one-crowd"
    if not (out / "truth.csv").is_file():
        convert("crowd", data_root, out, n=1, seed=3)
    return out


@pytest.fixture(scope="module")
def service(ray_local, data_root, tmp_path_factory):
    from ray import serve

    from facelab.converters import convert
    from facelab.formats import get_format
    from facelab.train import train
    from serve.app import build_app

    store = str(tmp_path_factory.mktemp("faces-store"))
    voc = get_format("detect").synthesize(tmp_path_factory.mktemp("voc"), seed=0)
    train("detect", voc, store, config={"model": "hog", "min_side": 160, "pad": 0.15}, promote=True)
    pairs = tmp_path_factory.mktemp("verify")
    convert("verify", data_root, pairs, people=4, folds=2, n=4)
    train("verify", pairs, store, promote=True)
    train("crowd", _crowd(data_root, tmp_path_factory), store, promote=True)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    gallery = tmp_path_factory.mktemp("gallery") / "gallery.sqlite"
    serve.run(build_app({"store": store, "tasks": ["detect", "verify", "crowd"], "gallery": str(gallery)}), name="facelab", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def test_detect_finds_the_face_in_a_multipart_upload(service, data_root):
    answer = httpx.post(f"{service}/detect", files={"image": ("1.pgm", _orl(data_root, 1, 1))}, timeout=120)
    assert answer.status_code == 200, answer.text
    faces = answer.json()["faces"]
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0]["box"]
    assert 0 <= x0 < x1 <= 92 and 0 <= y0 < y1 <= 112 and (x1 - x0) > 30


@pytest.mark.parametrize("files, json_body, status", [
    ({"image": ("notes.txt", b"this is not an image")}, None, 415),
    ({"image": ("bomb.png", _png(8000, 8000, mode="1"))}, None, 413),  # 64 Mpixel from a tiny file
    (None, {"image": "%%% not base64 %%%"}, 422),
    (None, {"picture": "abc"}, 422),
])
def test_bad_uploads_are_4xx_and_service_keeps_serving(service, data_root, files, json_body, status):
    bad = httpx.post(f"{service}/detect", files=files, json=json_body, timeout=120)
    assert bad.status_code == status, bad.text
    good = httpx.post(f"{service}/detect", files={"image": ("1.pgm", _orl(data_root, 2, 1))}, timeout=120)
    assert good.status_code == 200 and len(good.json()["faces"]) == 1


def test_gallery_enroll_list_identify_delete(service, data_root):
    url = f"{service}/gallery/subjects"
    for person in (1, 2, 3):
        files = [("images", (f"{k}.pgm", _orl(data_root, person, k))) for k in (1, 2, 3)]
        enrolled = httpx.post(url, files=files, data={"subject_id": f"s{person}"}, timeout=120)
        assert enrolled.status_code == 200, enrolled.text
    listed = httpx.get(url, timeout=60).json()["subjects"]
    assert [s["subject_id"] for s in listed] == ["s1", "s2", "s3"]
    for person in (1, 2, 3):
        probe = httpx.post(f"{service}/identify", files={"image": ("9.pgm", _orl(data_root, person, 9))},
                           data={"k": "2"}, timeout=120)
        assert probe.status_code == 200, probe.text
        matches = probe.json()["matches"]
        assert len(matches) == 2 and matches[0]["subject_id"] == f"s{person}" and matches[0]["distance"] < matches[1]["distance"]
    no_face = httpx.post(f"{service}/identify", files={"image": ("grey.png", _png(120, 120))}, timeout=120)
    assert no_face.status_code == 422 and "face" in no_face.text
    assert httpx.delete(f"{url}/s2", timeout=60).status_code == 200
    assert httpx.delete(f"{url}/s2", timeout=60).status_code == 404
    assert [s["subject_id"] for s in httpx.get(url, timeout=60).json()["subjects"]] == ["s1", "s3"]


def test_portal_page_has_a_form_per_endpoint(service):
    page = httpx.get(service, timeout=60)
    assert page.status_code == 200
    assert "POST /detect" in page.text and "type=file name=image" in page.text and "/identify" in page.text


def test_verify_answers_same_and_different_people(service, data_root):
    def ask(a, b):
        files = {"image_a": ("a.pgm", _orl(data_root, *a)), "image_b": ("b.pgm", _orl(data_root, *b))}
        return httpx.post(f"{service}/verify", files=files, timeout=120)

    same, different = ask((7, 1), (7, 4)), ask((7, 1), (8, 1))
    assert same.status_code == different.status_code == 200, (same.text, different.text)
    assert same.json()["same"] and same.json()["distance"] < same.json()["threshold"]
    assert not different.json()["same"] and different.json()["distance"] > different.json()["threshold"]
    faceless = httpx.post(f"{service}/verify", files={"image_a": ("a.pgm", _orl(data_root, 7, 1)),
                                                      "image_b": ("grey.png", _png(92, 112))}, timeout=120)
    assert faceless.status_code == 422 and "image_b" in faceless.text
    assert httpx.get(f"{service}/tasks", timeout=30).status_code == 200


def test_crowd_finds_the_missing_face(service, crowd_dir):
    truth = dict(line.split(",") for line in (crowd_dir / "truth.csv").read_text().split()[1:])
    image_id = next(iter(truth))
    files = {part: (f"{image_id}.jpg", (crowd_dir / part / f"{image_id}.jpg").read_bytes()) for part in ("missing", "target")}
    answer = httpx.post(f"{service}/crowd", files=files, timeout=300)
    assert answer.status_code == 200, answer.text
    assert answer.json()["index"] == int(truth[image_id])
    broken = httpx.post(f"{service}/crowd", files={**files, "missing": ("m.jpg", b"not an image")}, timeout=120)
    assert broken.status_code == 415 and "missing" in broken.text
    assert httpx.post(f"{service}/crowd", files=files, timeout=300).status_code == 200  # still serving
