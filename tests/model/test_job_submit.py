"""`ray job submit` against a real head node started with `ray start --head` on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from facelab.formats import get_format
from facelab.store import ModelStore

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log, env):
    # every node gets its own agent ports: the test session's embedded Ray holds the defaults
    ports = [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
             f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
             f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}"]
    return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *ports, *args], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _wait(what, ready, procs, log_path, timeout=180):
    deadline = time.time() + timeout
    while not ready():
        if any(p.poll() is not None for p in procs) or time.time() > deadline:
            pytest.fail(f"{what} did not come up: {log_path.read_text()[-2000:]}")
        time.sleep(1)


def _alive_nodes(address):
    try:
        nodes = httpx.get(f"{address}/nodes?view=summary", timeout=5).json()["data"]["summary"]
        return sum(1 for n in nodes if n["raylet"]["state"] == "ALIVE")
    except (httpx.HTTPError, KeyError, ValueError):
        return 0


@pytest.fixture
def two_node_cluster(tmp_path):
    """A head node (`ray start --head`) and a second worker node, both on 127.0.0.1."""
    dashboard, gcs = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    log_path = tmp_path / "cluster.log"
    log = open(log_path, "w")
    address = f"http://127.0.0.1:{dashboard}"
    procs = [_start(["--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dashboard}", "--num-cpus=1"], log, env)]
    try:
        _wait("head node", lambda: _alive_nodes(address) == 1, procs, log_path)
        procs.append(_start([f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=1"], log, env))
        _wait("worker node", lambda: _alive_nodes(address) == 2, procs, log_path)
        yield address, env
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()
        # a killed `ray start` leaves its address behind for later ray.init() calls to find
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()


@pytest.mark.slow
def test_ray_job_submit_trains_and_stores_a_run(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    data = get_format("sentiment").synthesize(tmp_path / "data", n=200, seed=3)
    store = tmp_path / "store"
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
               sys.executable, "-m", "jobs.train", "--task", "sentiment", "--data", str(data), "--store", str(store),
               "--config", "tests/model/small_sentiment.yaml"]
    for _ in range(20):  # the head's job agent registers a little after the node is alive
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        if "No available agent" not in proc.stdout + proc.stderr:
            break
        time.sleep(2)
    assert "succeeded" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{\n"):proc.stdout.index("\n}") + 2])
    run = ModelStore(str(store)).load("sentiment", result["run_id"])
    assert run.config["ensemble_folds"] == 3
    assert run.metrics["cv_f1_weighted"] == pytest.approx(result["cv_f1_weighted"])
    assert (run.model_dir / "ensemble.joblib").is_file()
