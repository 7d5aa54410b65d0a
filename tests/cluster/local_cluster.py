"""A local multi-node Ray cluster on 127.0.0.1: a head and worker nodes, each a `ray start --block`
process in a session of its own, so a worker node (its raylet, agents and workers) can be SIGKILLed
whole. Shared by the job-submission tests and the node-loss tests (their fixtures: conftest.py).

Every node gets its own agent ports (the test session's embedded Ray holds the defaults), and every
worker node its own `--temp-dir`, as on another machine: nodes on one machine sharing a temp dir
delete each other's runtime-env files.
"""

from __future__ import annotations

import contextlib
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
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# the GCS declares a node dead after this many missed health checks, this far apart (Ray's defaults: 5, 3 s)
FAST_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this process: the kernel may return a port
    it just gave out once that socket is closed, and two of a node's components on one port stop
    `ray start` ("trying to use a port number ... used by other components")."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _start(args, log, env) -> subprocess.Popen:
    ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
             f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]
    return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *ports, *args], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _kill_holders(folder: str) -> None:
    """SIGKILL the processes whose command line names `folder` (a worker node's temp dir): what
    left the node's process group, if anything did."""
    for _ in range(20):
        left = [p for p in psutil.process_iter(["cmdline"])
                if p.pid != os.getpid() and any(folder in part for part in p.info["cmdline"] or ())]
        if not left:
            return
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        time.sleep(0.3)


class LocalCluster:
    """A head node and worker nodes, all `ray start` processes on 127.0.0.1. `address` is the
    dashboard's (for `ray job submit`), `gcs` the one a driver joins (`--address` / RAY_ADDRESS).
    The head has a custom resource `head` (1), for what a test keeps off the worker nodes."""

    def __init__(self, log_path: Path, head_cpus: int = 1):
        self.dashboard_port, self.gcs_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.gcs = f"127.0.0.1:{self.gcs_port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.head = _start(["--head", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
                            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                            f"--num-cpus={head_cpus}", '--resources={"head": 1}'], self.log, {**self.env, **FAST_DEATH})
        self.workers: dict[str, tuple[subprocess.Popen, str]] = {}  # node id -> (`ray start`, its temp dir)
        self.temp_dirs: list[str] = []  # every worker's, killed ones too: removed again at the end
        self.wait("head node", lambda: len(self.alive_nodes()) == 1)
        self.head_node = self.alive_nodes()[0]

    def procs(self) -> list[subprocess.Popen]:
        return [self.head, *(proc for proc, _ in self.workers.values())]

    def wait(self, what, ready, timeout=180) -> None:
        deadline = time.time() + timeout
        while not ready():
            if any(p.poll() is not None for p in self.procs()) or time.time() > deadline:
                pytest.fail(f"{what} did not come up: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.5)

    def nodes(self) -> list[dict]:
        try:
            nodes = httpx.get(f"{self.address}/nodes?view=summary", timeout=5).json()["data"]["summary"]
            return [n["raylet"] for n in nodes]
        except (httpx.HTTPError, KeyError, ValueError):
            return []

    def alive_nodes(self) -> list[str]:
        return [n["nodeId"] for n in self.nodes() if n.get("state") == "ALIVE"]

    def add_worker(self, num_cpus: int = 1) -> str:
        """Start a worker node with a temp dir of its own; returns its node id once it takes work."""
        before = set(self.alive_nodes())
        temp = tempfile.mkdtemp(prefix="rw-", dir="/tmp")  # short: Ray's socket paths live under it
        self.temp_dirs.append(temp)
        proc = _start([f"--address={self.gcs}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
                       f"--temp-dir={temp}"], self.log, self.env)
        self.workers[f"starting-{proc.pid}"] = (proc, temp)
        self.wait("worker node", lambda: len(set(self.alive_nodes()) - before) == 1)
        node = (set(self.alive_nodes()) - before).pop()
        self.workers[node] = self.workers.pop(f"starting-{proc.pid}")
        self._probe(node)
        return node

    def _probe(self, node: str) -> None:
        """A task pinned to `node` from a driver on the head: a scenario starts on a node that has
        taken work, not one the dashboard has only just listed."""
        probe = ("import ray\n"
                 "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Node\n"
                 f"ray.init(address='{self.gcs}', logging_level='ERROR')\n"
                 "here = ray.remote(lambda: ray.get_runtime_context().get_node_id())\n"
                 f"assert ray.get(here.options(num_cpus=0.01, scheduling_strategy=Node('{node}', soft=False))"
                 ".remote(), timeout=120) == '" + node + "'\n")
        done = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"no task ran on the new worker node {node}: {done.stderr[-2000:]}"

    def kill_worker(self, node: str, *, wait_dead: bool = False) -> None:
        """SIGKILL the worker node's process group (its `ray start`, raylet, agents and workers);
        with `wait_dead`, return once the head has declared the node dead."""
        proc, temp = self.workers.pop(node)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        _kill_holders(temp)
        shutil.rmtree(temp, ignore_errors=True)
        if wait_dead:
            self.wait(f"node {node} declared dead", lambda: node not in self.alive_nodes(), timeout=60)

    def stop(self) -> None:
        """SIGTERM every node at once; SIGKILL what is still up after 10 s (the test is over)."""
        procs = [*(proc for proc, _ in self.workers.values()), self.head]
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for temp in self.temp_dirs:  # a killed node's raylet may have written there after its first removal
            _kill_holders(temp)
            shutil.rmtree(temp, ignore_errors=True)
        self.log.close()
        # a killed `ray start` leaves its address behind for later ray.init() calls to find
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{self.gcs_port}"):
            current.unlink()


@contextlib.contextmanager
def local_cluster(tmp_path_factory, head_cpus: int, worker_cpus: list[int]):
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster") / "cluster.log", head_cpus)
    try:
        for cpus in worker_cpus:
            cluster.add_worker(cpus)
        yield cluster
    finally:
        cluster.stop()
