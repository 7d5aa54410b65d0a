"""The model store under faults and races, the same on a local path and on a local S3-compatible
server (moto's server mode on 127.0.0.1, a random port): atomic writes, promote races against
concurrent loads, torn and edited manifests, unlisted files, the signing key, killed writers and
the fetch cache of a remote store."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from facelab.errors import FacelabError
from facelab.store import ModelStore

TASK = "sentiment"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server for this module; pyarrow and boto3 find it through the AWS_* variables."""
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint,
                            "AWS_EC2_METADATA_DISABLED": "true"}.items():
            env.setenv(name, value)
        yield endpoint
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACELAB_STORE_KEY", raising=False)
    if request.param == "local":
        return str(tmp_path / "store")
    import boto3

    bucket = f"facelab-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=request.getfixturevalue("s3_endpoint")).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"


def _model(folder: Path, content: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "w.bin").write_bytes(content)
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "meta.json").write_text("{}")
    return folder


def _save(store: ModelStore, tmp_path: Path, content: bytes = b"weights") -> str:
    return store.save(TASK, _model(tmp_path / f"m-{uuid.uuid4().hex[:6]}", content), config={"C": 1},
                      metrics={"f1": 0.5}, data_fingerprint="x")


def _raw_write(store: ModelStore, rel: str, data: bytes) -> None:
    """Bytes written straight into the store, as a crash or an attacker would leave them."""
    path = f"{store.root}/{rel}"
    store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with store.fs.open_output_stream(path) as fh:
        fh.write(data)


def _raw_read(store: ModelStore, rel: str) -> bytes:
    with store.fs.open_input_stream(f"{store.root}/{rel}") as fh:
        return fh.read()


def _one_line_error(excinfo, *names: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and all(name in message for name in names), message
    return message


def test_round_trip_history_and_cache(store_uri, tmp_path):
    store = ModelStore(store_uri)
    first, second = _save(store, tmp_path, b"one"), _save(store, tmp_path, b"two")
    assert store.promote(TASK, first)["previous"] is None
    assert store.promote(TASK, second)["previous"] == first
    run = store.load(TASK)
    assert run.run_id == second and (run.model_dir / "w.bin").read_bytes() == b"two"
    assert [r["run_id"] for r in store.promotions(TASK)] == [first, second]
    assert sorted(m["run_id"] for m in store.runs(TASK)) == sorted([first, second])
    if store.local:
        assert run.model_dir == Path(store_uri) / TASK / "runs" / second / "model"
        return
    cache = tmp_path / "cache" / "store"
    assert str(run.model_dir).startswith(str(cache))
    assert store.load(TASK).model_dir == run.model_dir  # reused while it verifies
    (run.model_dir / "w.bin").write_bytes(b"damaged")  # a damaged cached copy is fetched again
    assert (store.load(TASK).model_dir / "w.bin").read_bytes() == b"two"
    _raw_write(store, f"{TASK}/runs/{first}/model/w.bin", b"evil")  # a failed fetch leaves no copy behind
    with pytest.raises(FacelabError) as excinfo:
        store.load(TASK, first)
    _one_line_error(excinfo, "w.bin", "checksum")
    leftovers = [p for p in cache.rglob("*") if ".tmp-" in p.name or ".trash-" in p.name]
    assert leftovers == []
    assert not (run.model_dir.parent / first).exists()


def _in_force(store: ModelStore) -> str:
    """The file that says which run is in force: promoted.json locally, the latest history record remotely."""
    if store.local:
        return f"{TASK}/promoted.json"
    return f"{TASK}/promotions/" + max(p.rsplit("/", 1)[1] for p in _listing(store, f"{TASK}/promotions"))


def _listing(store: ModelStore, rel: str) -> list[str]:
    import pyarrow.fs as pafs

    return [i.path for i in store.fs.get_file_info(pafs.FileSelector(f"{store.root}/{rel}"))]


def test_torn_promotion_is_a_one_line_error(store_uri, tmp_path):
    store = ModelStore(store_uri)
    store.promote(TASK, _save(store, tmp_path))
    rel = _in_force(store)
    good = _raw_read(store, rel)
    _raw_write(store, rel, good[: len(good) // 2])
    with pytest.raises(FacelabError) as excinfo:
        store.load(TASK)
    _one_line_error(excinfo, rel.rsplit("/", 1)[1], "torn")
    # an edited promotion (digest not rewritten) is refused too
    _raw_write(store, rel, good.replace(b'"run_id"', b'"run_id_"'))
    with pytest.raises(FacelabError, match=rel.rsplit("/", 1)[1]):
        store.load(TASK)


def test_racing_promotes_on_an_object_store_agree_on_the_latest(store_uri, tmp_path):
    """Two promotes racing on S3 (no lock there): both are recorded, and the one whose
    promoted.json write landed last does not win over the later promotion in the history."""
    store = ModelStore(store_uri)
    if store.local:
        pytest.skip("a local store serialises promotes with a lock (test_promote_race_between_processes)")
    first, second = _save(store, tmp_path, b"one"), _save(store, tmp_path, b"two")
    store.promote(TASK, first)
    stale = _raw_read(store, f"{TASK}/promoted.json")
    store.promote(TASK, second)
    _raw_write(store, f"{TASK}/promoted.json", stale)  # the first promote's write landed last
    assert [r["run_id"] for r in store.promotions(TASK)] == [first, second]
    assert store.promoted(TASK) == second and store.load(TASK).run_id == second


def test_torn_manifest_never_hides_the_other_runs(store_uri, tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    store = ModelStore(store_uri)
    good, bad = _save(store, tmp_path), _save(store, tmp_path)
    store.promote(TASK, good)
    manifest = _raw_read(store, f"{TASK}/runs/{bad}/run.json")
    _raw_write(store, f"{TASK}/runs/{bad}/run.json", manifest[:100])
    manifests, problems = store.scan(TASK)
    assert [m["run_id"] for m in manifests] == [good]
    assert len(problems) == 1 and f"{bad}/run.json" in problems[0] and "torn" in problems[0]
    with pytest.raises(FacelabError) as excinfo:
        store.load(TASK, bad)
    _one_line_error(excinfo, f"{bad}/run.json")
    with pytest.raises(FacelabError, match="torn"):
        store.promote(TASK, bad)
    result = CliRunner().invoke(app, ["runs", "--task", TASK, "--store", store_uri])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert listed["promoted"] == good and [r["run_id"] for r in listed["runs"]] == [good]
    assert len(listed["unreadable"]) == 1 and bad in listed["unreadable"][0]


def test_unlisted_files_refuse_the_run(store_uri, tmp_path):
    store = ModelStore(store_uri)
    run_id = _save(store, tmp_path)
    _raw_write(store, f"{TASK}/runs/{run_id}/model/extra.pt", b"not in the manifest")
    with pytest.raises(FacelabError) as excinfo:
        store.load(TASK, run_id)
    _one_line_error(excinfo, "extra.pt", "not in run")
    other = _save(store, tmp_path)
    _raw_write(store, f"{TASK}/runs/{other}/hook.py", b"import os")
    with pytest.raises(FacelabError, match="hook.py: not in run"):
        store.load(TASK, other)


def _forge(store: ModelStore, run_id: str, content: bytes) -> None:
    """An attacker with write access: a new model file, its checksum and the manifest's digest."""
    rel = f"{TASK}/runs/{run_id}"
    _raw_write(store, f"{rel}/model/w.bin", content)
    manifest = json.loads(_raw_read(store, f"{rel}/run.json"))
    manifest["files"]["w.bin"] = hashlib.sha256(content).hexdigest()
    body = {k: v for k, v in manifest.items() if k not in ("digest", "signature")}
    manifest["digest"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    _raw_write(store, f"{rel}/run.json", json.dumps(manifest).encode())


def test_signing_key_refuses_a_forged_file_and_digest(store_uri, tmp_path):
    signed = ModelStore(store_uri, key="s3cret")
    run_id = _save(signed, tmp_path)
    assert (signed.load(TASK, run_id).model_dir / "w.bin").read_bytes() == b"weights"
    with pytest.raises(FacelabError, match="signature"):  # another key
        ModelStore(store_uri, key="other").load(TASK, run_id)
    _forge(signed, run_id, b"evil pickle")
    with pytest.raises(FacelabError) as excinfo:
        signed.load(TASK, run_id)
    _one_line_error(excinfo, "run.json", "signature")
    # without a key the digest only catches accidents: the forgery's digest is consistent
    assert ModelStore(store_uri).manifest(TASK, run_id)["files"]["w.bin"] == hashlib.sha256(b"evil pickle").hexdigest()
    unsigned = _save(ModelStore(store_uri), tmp_path)
    with pytest.raises(FacelabError, match="no signature"):
        signed.load(TASK, unsigned)


def test_edited_manifest_is_refused_by_its_digest(store_uri, tmp_path):
    store = ModelStore(store_uri)
    run_id = _save(store, tmp_path)
    text = _raw_read(store, f"{TASK}/runs/{run_id}/run.json").replace(b'"f1": 0.5', b'"f1": 0.99')
    _raw_write(store, f"{TASK}/runs/{run_id}/run.json", text)
    with pytest.raises(FacelabError, match="does not match its digest"):
        store.load(TASK, run_id)


def _race(store: ModelStore, run_ids: list[str], *, promoters: int, each: int, readers: int) -> tuple[int, list]:
    errors, loads, done = [], [0], threading.Event()

    def promote(offset: int) -> None:
        try:
            for i in range(each):
                store.promote(TASK, run_ids[(offset + i) % len(run_ids)])
        except Exception as exc:  # noqa: BLE001 - every exception is a failure of the race
            errors.append(repr(exc))

    def read() -> None:
        while not done.is_set():
            try:
                run = store.load(TASK)
                assert run.run_id in run_ids and (run.model_dir / "w.bin").read_bytes() == run.run_id.encode()
                loads[0] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(promoters)]
    reading = [threading.Thread(target=read) for _ in range(readers)]
    for thread in reading + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in reading:
        thread.join()
    return loads[0], errors


def _runs_named_by_content(store: ModelStore, tmp_path: Path, n: int) -> list[str]:
    """Runs whose one model file holds their own run id, so a reader can tell a mixed-up load."""
    run_ids = []
    for _ in range(n):
        run_id = _save(store, tmp_path)
        run_ids.append(run_id)
        _raw_write(store, f"{TASK}/runs/{run_id}/model/w.bin", run_id.encode())
        manifest = json.loads(_raw_read(store, f"{TASK}/runs/{run_id}/run.json"))
        manifest["files"]["w.bin"] = hashlib.sha256(run_id.encode()).hexdigest()
        _raw_write(store, f"{TASK}/runs/{run_id}/run.json", store._seal(manifest))
    return run_ids


def test_promote_race_against_loads(store_uri, tmp_path):
    """Thousands of promotes (hundreds over HTTP) from threads beside readers loading the promoted
    run: zero exceptions, every promotion in the history, and on a local path each one names
    the promotion before it (they were serialised)."""
    store = ModelStore(store_uri)
    run_ids = _runs_named_by_content(store, tmp_path, 3)
    store.promote(TASK, run_ids[0])
    promoters, each = (4, 300) if store.local else (4, 25)
    started = time.perf_counter()
    loads, errors = _race(store, run_ids, promoters=promoters, each=each, readers=2)
    seconds = time.perf_counter() - started
    print(f"{store_uri.split(':')[0]}: {promoters * each} promotes, {loads} loads in {seconds:.1f} s")
    assert errors == [] and loads > 0
    history = store.promotions(TASK)
    assert len(history) == promoters * each + 1
    if store.local:
        assert all(h["previous"] == p["run_id"] for p, h in zip(history, history[1:]))
        assert store.promoted(TASK) == history[-1]["run_id"]


WRITER = textwrap.dedent("""
    import sys, pathlib
    from facelab.store import ModelStore
    store, runs, folder = ModelStore(sys.argv[1]), sys.argv[2].split(","), pathlib.Path(sys.argv[3])
    (folder / "w.bin").write_bytes(b"x" * 100_000)
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9
    for i in range(count):
        store.promote("sentiment", runs[i % len(runs)])
        if i % 7 == 0:
            store.save("sentiment", folder, config={}, metrics={}, data_fingerprint="x")
        if i == 3:
            print("going", flush=True)
    print("done", flush=True)
""")


def _writer(store_uri: str, run_ids: list[str], folder: Path, *count: int) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", WRITER, store_uri, ",".join(run_ids), str(folder), *map(str, count)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ})


@pytest.mark.slow
def test_promote_race_between_processes(tmp_path, monkeypatch):
    """Two processes promoting (and saving) beside a reader in this one: the flock serialises them."""
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path / "cache"))
    store = ModelStore(str(tmp_path / "store"))
    run_ids = _runs_named_by_content(store, tmp_path, 3)
    store.promote(TASK, run_ids[0])
    writers = [_writer(store.uri, run_ids, tmp_path / f"w{i}", 200) for i in range(2)]
    errors, loads = [], 0
    while any(w.poll() is None for w in writers):
        try:
            assert store.load(TASK).run_id in run_ids
            loads += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
    assert [w.returncode for w in writers] == [0, 0] and errors == [] and loads > 0
    history = store.promotions(TASK)
    assert len(history) == 401
    assert all(h["previous"] == p["run_id"] for p, h in zip(history, history[1:]))
    manifests, problems = store.scan(TASK)
    assert problems == [] and len(manifests) == 3 + 2 * 29


@pytest.mark.slow
def test_killed_writer_leaves_the_promoted_run_in_force(store_uri, tmp_path):
    """A process SIGKILLed while it promotes and saves in a loop: the store still loads a
    promoted run, every finished run reads, and a leftover temporary file changes nothing."""
    store = ModelStore(store_uri)
    run_ids = _runs_named_by_content(store, tmp_path, 2)
    store.promote(TASK, run_ids[0])
    writer = _writer(store_uri, run_ids, tmp_path / "w")
    assert writer.stdout.readline().strip() == "going"
    time.sleep(0.3)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert store.load(TASK).run_id in run_ids
    manifests, problems = store.scan(TASK)
    # a save killed before its manifest: a local one is a hidden folder, a remote one is listed as unfinished
    assert all("unfinished" in p for p in problems) and len(manifests) >= 2
    # a torn temporary promotion, as a write killed before its rename leaves it
    before = store.promoted(TASK)
    _raw_write(store, f"{TASK}/.promoted.json.tmp-dead", b'{"run_id": "' + run_ids[1].encode())
    assert store.load(TASK).run_id == before


def test_the_remote_cache_keeps_the_recently_used_runs(store_uri, tmp_path, monkeypatch):
    """Fetched runs beyond the FACELAB_CACHE_KEEP most recently used ones, idle for an hour, are
    removed at the next fetch; recent ones (a replica may be loading them) stay."""
    import os

    store = ModelStore(store_uri)
    if store.local:
        pytest.skip("a local store loads runs in place: there is no cache")
    monkeypatch.setenv("FACELAB_CACHE_KEEP", "1")
    runs = [_save(store, tmp_path, f"w{i}".encode()) for i in range(4)]
    folders = [store.load(TASK, run).model_dir for run in runs[:3]]
    assert all(f.is_dir() for f in folders)  # all used within the hour: kept
    for age, folder in zip((3, 2, 1), folders):  # last used 3, 2 and 1 hours ago
        os.utime(folder, (time.time() - age * 3600,) * 2)
    newest = store.load(TASK, runs[3]).model_dir
    assert [f.is_dir() for f in folders] == [False, False, True] and newest.is_dir()
    assert store.load(TASK, runs[0]).model_dir.is_dir()  # fetched again when asked for
