"""`ray job submit` against a real head node started with `ray start --head` on 127.0.0.1."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def _stop(procs):
    """SIGTERM every node at once; SIGKILL what is still up after 10 s (the test is over)."""
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 10
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """A head node (`ray start --head`) and a second worker node, both on 127.0.0.1."""
    dashboard, gcs = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    log_path = tmp_path_factory.mktemp("cluster") / "cluster.log"
    log = open(log_path, "w")
    address = f"http://127.0.0.1:{dashboard}"
    worker_temp = tempfile.mkdtemp(prefix="rw-", dir="/tmp")  # short: Ray's socket paths live under it
    procs = [_start(["--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dashboard}", "--num-cpus=1"], log, env)]
    try:
        _wait("head node", lambda: _alive_nodes(address) == 1, procs, log_path)
        # a temp dir of its own, as on another machine: nodes sharing one delete each other's runtime-env files
        procs.append(_start([f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             f"--temp-dir={worker_temp}"], log, env))
        _wait("worker node", lambda: _alive_nodes(address) == 2, procs, log_path)
        yield address, env
    finally:
        _stop(list(reversed(procs)))
        log.close()
        shutil.rmtree(worker_temp, ignore_errors=True)
        # a killed `ray start` leaves its address behind for later ray.init() calls to find
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()


def _submit(command, env, cwd=None):
    for _ in range(20):  # the head's job agent registers a little after the node is alive
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
        if "No available agent" not in proc.stdout + proc.stderr:
            return proc
        time.sleep(2)
    return proc


@pytest.mark.slow
def test_ray_job_submit_trains_and_stores_a_run(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    data = get_format("sentiment").synthesize(tmp_path / "data", n=200, seed=3)
    store = tmp_path / "store"
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
               sys.executable, "-m", "jobs.train", "--task", "sentiment", "--data", str(data), "--store", str(store),
               "--config", "tests/model/small_sentiment.yaml"]
    proc = _submit(command, env)
    assert "succeeded" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{\n"):proc.stdout.index("\n}") + 2])
    run = ModelStore(str(store)).load("sentiment", result["run_id"])
    assert run.config["ensemble_folds"] == 3
    assert run.metrics["cv_f1_weighted"] == pytest.approx(result["cv_f1_weighted"])
    assert (run.model_dir / "ensemble.joblib").is_file()


# Runs as the job: where every kind of Ray process imports `facelab` from, on every node.
PROBE = """
import json, os, sys
import torch  # first, as facelab's torch jobs do: loaded after pyarrow and Tune, its MKL may fail to load
import ray, facelab
from ray import train, tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

out = sys.argv[1]

def note(kind):
    import facelab
    node = ray.get_runtime_context().get_node_id()
    with open(os.path.join(out, f"{kind}-{node}-{os.getpid()}.json"), "w") as f:
        json.dump({"kind": kind, "node": node, "token": getattr(facelab, "SUBMITTED", None), "file": facelab.__file__}, f)

@ray.remote(num_cpus=0.5)
def task():
    note("task")

@ray.remote(num_cpus=0.5)
class Actor:
    def probe(self):
        note("actor")

def trial(config):
    note("tune-trial")
    tune.report({"done": 1})

def worker(config):
    note("train-worker")

ray.init()
note("driver")
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
pinned = [NodeAffinitySchedulingStrategy(node, soft=False) for node in nodes]
ray.get([task.options(scheduling_strategy=p).remote() for p in pinned])
ray.get([Actor.options(scheduling_strategy=p).remote().probe.remote() for p in pinned])
tune.Tuner(tune.with_resources(trial, {"cpu": 1}), param_space={"x": tune.grid_search([0, 1])},
           run_config=tune.RunConfig(storage_path=os.path.join(out, "tune"))).fit()
from ray.train.torch import TorchTrainer
TorchTrainer(worker, scaling_config=train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
             run_config=train.RunConfig(storage_path=os.path.join(out, "train"))).fit()
"""


@pytest.mark.slow
def test_a_job_runs_the_submitted_library_everywhere(two_node_cluster, tmp_path):
    """A working tree whose `facelab` differs from the installed one (the editable install of this
    checkout), submitted with runtime_env.yaml as the README says: the driver, tasks and actors on
    both nodes, Tune trials and Ray Train workers all import the submitted library."""
    import uuid

    address, env = two_node_cluster
    tree = tmp_path / "checkout"
    for part in ("jobs", "tuning", "serve", "platform/facelab"):
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "runtime_env.yaml", tree)
    token = uuid.uuid4().hex
    init = tree / "platform" / "facelab" / "__init__.py"
    init.write_text(init.read_text() + f"\nSUBMITTED = {token!r}\n")
    (tree / "probe.py").write_text(PROBE)
    out = tmp_path / "probes"
    out.mkdir()
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--runtime-env", "runtime_env.yaml", "--",
               sys.executable, "probe.py", str(out)]
    proc = _submit(command, env, cwd=tree)
    (tmp_path / "job.log").write_text(proc.stdout + proc.stderr)
    assert "succeeded" in proc.stdout, f"{tmp_path / 'job.log'}: " + proc.stdout[-3000:] + proc.stderr[-3000:]
    probes = [json.loads(p.read_text()) for p in out.glob("*.json")]
    kinds = {p["kind"] for p in probes}
    assert kinds == {"driver", "task", "actor", "tune-trial", "train-worker"}, kinds
    assert len({p["node"] for p in probes if p["kind"] == "task"}) == 2  # both nodes
    assert len({p["node"] for p in probes if p["kind"] == "actor"}) == 2
    assert len([p for p in probes if p["kind"] == "train-worker"]) == 2
    assert [p for p in probes if p["token"] != token] == [], "a process imported another facelab"
    assert not any(p["file"].startswith(str(REPO / "platform")) for p in probes)
