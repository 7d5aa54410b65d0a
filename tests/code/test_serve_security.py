"""Serve, secure by default, without Ray: API keys and roles, where the proxy listens, what a log
may show, and the gateway's budgets (body streaming, JSON depth and numbers, images and pixels)."""

import asyncio
import io
import json
import sys

import pytest
import yaml
from starlette.requests import Request
from PIL import Image
from typer.testing import CliRunner

from facelab.access import ADMIN, READ, ApiKeys, check_exposure, is_loopback, load_keys, redact_uri
from facelab.errors import FacelabError
from jobs.common import SERVE_CONFIG
from jobs.serve import resolve_config
from serve.limits import ApiError, Limits, check_images, json_depth, parse_json

READ_KEY, ADMIN_KEY = "r" * 20 + "-read-key", "a" * 20 + "-admin-key"


def _png(width, height, mode="1") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- keys ------------------------------------------------------------------------------------------

def test_keys_from_env_and_file_with_roles(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# facelab keys\nadmin:{ADMIN_KEY}\n")
    keys = load_keys(keys_file, {"FACELAB_API_KEYS": f"{READ_KEY}, read:{'x' * 16}"})
    assert keys.role(READ_KEY) == READ and keys.role("x" * 16) == READ and keys.role(ADMIN_KEY) == ADMIN
    assert keys.role(READ_KEY[:-1]) is None and keys.role("") is None and keys.role(None) is None
    assert READ_KEY not in repr(keys) and ADMIN_KEY not in repr(keys) and repr(keys) == "ApiKeys(2 read, 1 admin)"
    assert not load_keys(None, {}) and not ApiKeys()


def test_a_short_key_is_refused_without_showing_it():
    with pytest.raises(FacelabError, match="shorter than 16") as info:
        load_keys(None, {"FACELAB_API_KEYS": "admin:tooshort"})
    assert "tooshort" not in str(info.value)


# --- where the proxy listens -----------------------------------------------------------------------

def test_the_shipped_config_listens_on_the_loopback_only():
    assert yaml.safe_load(SERVE_CONFIG.read_text())["http_options"]["host"] == "127.0.0.1"
    assert resolve_config(SERVE_CONFIG, environ={})["http_options"]["host"] == "127.0.0.1"


def test_a_config_without_a_host_listens_on_the_loopback(tmp_path):
    bare = tmp_path / "serve.yaml"
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    del config["http_options"]["host"]
    bare.write_text(yaml.safe_dump(config))
    assert resolve_config(bare, environ={})["http_options"]["host"] == "127.0.0.1"


def test_a_public_address_needs_keys_or_insecure():
    with pytest.raises(FacelabError, match="refusing to serve on 0.0.0.0.*no API key.*--insecure"):
        resolve_config(SERVE_CONFIG, host="0.0.0.0", environ={})
    assert resolve_config(SERVE_CONFIG, host="0.0.0.0", insecure=True, environ={})["http_options"]["host"] == "0.0.0.0"
    keyed = resolve_config(SERVE_CONFIG, host="0.0.0.0", port=9000, environ={"FACELAB_API_KEYS": READ_KEY})
    assert keyed["http_options"] == {**keyed["http_options"], "host": "0.0.0.0", "port": 9000}
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.5", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org", ""))
    check_exposure("::1", ApiKeys(), insecure=False)


def test_facelab_serve_cli_resolves_the_host_and_refuses_exposure(monkeypatch):
    from jobs.cli import app

    ran = []
    monkeypatch.setattr("os.execv", lambda program, argv: ran.append(argv))
    monkeypatch.delenv("FACELAB_API_KEYS", raising=False)
    monkeypatch.delenv("FACELAB_API_KEYS_FILE", raising=False)
    runner = CliRunner()
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "refusing to serve on 0.0.0.0" in refused.output and not ran
    assert runner.invoke(app, ["serve"]).exit_code == 0
    argv = ran[-1]  # Serve's CLI of this interpreter: works with the venv not on PATH
    assert argv[:4] == [sys.executable, "-m", "ray.serve.scripts", "run"]
    assert yaml.safe_load(open(argv[4]))["http_options"]["host"] == "127.0.0.1"
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0", "--insecure"]).exit_code == 0
    assert yaml.safe_load(open(ran[-1][4]))["http_options"]["host"] == "0.0.0.0"


# --- what logs and /tasks show ---------------------------------------------------------------------

@pytest.mark.parametrize("uri, shown", [
    ("s3://AKIAXYZ:s3cr3t@bucket/store", "s3://***@bucket/store"),
    ("s3://bucket/store?region=eu-west-1&secret_key=s3cr3t&access_key=AKIA", "s3://bucket/store?region=eu-west-1&secret_key=***&access_key=***"),
    ("gs://bucket/store?X-Goog-Signature=abc&token=t", "gs://bucket/store?X-Goog-Signature=***&token=***"),
    ("/plain/local/path", "/plain/local/path"),
    ("s3://bucket/store", "s3://bucket/store"),
])
def test_store_uris_are_redacted(uri, shown):
    assert redact_uri(uri) == shown


# --- budgets ---------------------------------------------------------------------------------------

def test_json_depth_counts_brackets_outside_strings_only():
    assert json_depth(b'{"a": [1, [2, {"b": 3}]]}') == 4
    assert json_depth(b'{"a": "[[[[{{{{\\"]]]\\\\"}') == 1
    assert json_depth(b"[" * 100_000) == 100_000


@pytest.mark.parametrize("body, limit", [
    (b"[" * 100_000 + b"]" * 100_000, "max_json_depth"),
    (b'{"embedding": [' + b"9" * 5000 + b"]}", "max_number_chars"),
    (b'{"k": 1.' + b"5" * 5000 + b"}", "max_number_chars"),
])
def test_json_limits_are_4xx_naming_the_limit(body, limit):
    with pytest.raises(ApiError) as info:
        parse_json(body, Limits())
    assert info.value.status == 422 and info.value.limit == limit and limit in info.value.body()["error"]["message"]


def test_not_json_is_400():
    for body in (b"{", b"\xff\xfe", b"[1,]", b"NaN-ish"):
        with pytest.raises(ApiError) as info:
            parse_json(body, Limits())
        assert info.value.status == 400 and info.value.code == "invalid_json"


def test_images_and_pixels_are_counted_from_headers_before_decoding():
    from facelab.uploads import to_base64

    from serve.api import EnrollRequest

    limits = Limits()
    big = to_base64(_png(5000, 5000))  # 25 Mpixel each, a few KB: within one image's limit
    check_images({"images": [big, big], "subject_id": "x"}, EnrollRequest, limits)
    with pytest.raises(ApiError) as info:
        check_images({"images": [big, big, big]}, EnrollRequest, limits)
    assert info.value.limit == "max_total_pixels" and info.value.status == 413 and info.value.field == "images[2]"
    with pytest.raises(ApiError) as info:
        check_images({"images": [to_base64(_png(8, 8))] * 33}, EnrollRequest, limits)
    assert info.value.limit == "max_images"
    with pytest.raises(ApiError) as info:
        check_images({"image": to_base64(_png(6000, 6000))}, EnrollRequest, limits)
    assert info.value.limit == "max_image_pixels" and info.value.field == "image"
    check_images({"image": "not base64 at all %%%"}, EnrollRequest, limits)  # left to the decoder (422 naming it)


def test_the_config_limits_are_the_limits_model():
    args = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]["args"]
    assert Limits.model_validate(args["limits"]) == Limits()


def test_read_body_stops_at_the_declared_length():
    from serve.limits import read_body

    async def never_called():
        raise AssertionError("the body was read")

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"5000")]}
    with pytest.raises(ApiError) as info:
        asyncio.run(read_body(Request(scope, never_called), Limits(max_body_bytes=1000)))
    assert info.value.status == 413 and json.dumps(info.value.body())


def test_task_deployment_options_come_from_the_config():
    from serve.app import task_options

    args = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]["args"]
    assert task_options(args, "detect") == {"num_replicas": 1, "max_ongoing_requests": 32}
    args["task_deployments"]["detect"] = {"num_replicas": 2}
    assert task_options(args, "detect") == {"num_replicas": 2, "max_ongoing_requests": 32}
    assert set(args["timeouts"]) >= {"default", "gallery"}
    with pytest.raises(FacelabError, match="unknown option"):
        task_options({"task_deployments": {"default": {"replicas": 2}}}, "detect")
