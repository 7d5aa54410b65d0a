"""Losing a node (issue 22 part 5): a head and two worker nodes (`ray start` processes, 2 CPUs each,
temp dirs of their own; the store and Train checkpoints on a path every node shares). Each facelab
verb runs against the cluster (`--address`) with its work on both workers, node ids in what it
records; then one worker node is SIGKILLed whole (its raylet, agents and workers) in the middle:

- a Tune sweep's trials resume from their last checkpoint on the survivor and the sweep finishes;
- a Ray Train run with one worker per node (DDP over gloo) resumes from its last checkpoint;
- a batch submission completes with every row exactly once;
- Serve keeps answering, with at most 1% of the requests sent during the kill failed.

A later scenario that needs two workers again starts a replacement node.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from facelab.formats import get_format
from local_cluster import REPO, free_port

FACELAB = str(Path(sys.executable).with_name("facelab"))
EPOCHS = 8  # each trial's / run's epochs: enough that a kill lands in the middle


def _workers(cluster) -> list[str]:
    """The cluster's two worker nodes, a replacement started for one a scenario before killed (once
    the head has declared that one dead, so no scenario starts beside a node it still counts alive)."""
    cluster.wait("killed worker nodes declared dead",
                 lambda: set(cluster.alive_nodes()) <= {cluster.head_node, *cluster.workers}, timeout=60)
    while len(cluster.workers) < 2:
        cluster.add_worker(2)
    return sorted(cluster.workers)


@pytest.fixture
def drivers():
    """The facelab drivers a test started (each in a session of its own): SIGKILLed when it ends."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _facelab(cluster, drivers: list, args: list[str], log: Path, tmp_path: Path) -> subprocess.Popen:
    """A facelab verb as a driver on the head's machine joined to the cluster (its JSON result: LOG.json)."""
    env = {**cluster.env, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "FACELAB_TRAIN_STORAGE": str(tmp_path / "train")}
    with open(log, "w") as err, open(log.with_suffix(".json"), "w") as out:
        proc = subprocess.Popen([FACELAB, *args, "--address", cluster.gcs], cwd=REPO, env=env, stdout=out, stderr=err,
                                start_new_session=True)
    drivers.append(proc)
    return proc


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 240, stuck: str | None = None) -> dict:
    """The driver's JSON result once it exits 0; a failure with its log's tail when it fails, runs
    past `timeout`, or its log says `stuck` (a message after which it would wait forever)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, f"no end within {timeout} s: {log.read_text()[-4000:]}"
        if stuck and stuck in log.read_text():
            pytest.fail(next(line for line in log.read_text().splitlines() if stuck in line))
        time.sleep(0.5)
    assert proc.returncode == 0, log.read_text()[-4000:]
    stdout = log.with_suffix(".json").read_text()  # Ray may print a line about a dead node before the JSON
    return json.JSONDecoder().raw_decode(stdout[0 if stdout.startswith("{") else stdout.rindex("\n{\n") + 1:])[0]


def _until(what: str, ready, proc: subprocess.Popen, log: Path, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        assert proc.poll() is None, f"ended before {what}: {log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s: {log.read_text()[-4000:]}"
        time.sleep(0.2)


def _reports(result_json: Path) -> list[dict]:
    """What a Tune trial (or a Train run) reported, epoch by epoch, as Tune wrote it."""
    if not result_json.is_file():
        return []
    lines = [line for line in result_json.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines if line.endswith("}")]


def _check_resumed(reports: list[dict], victim: str, survivor: str, killed_after: int) -> int:
    """Every epoch once, in order: a run of epochs on the victim (at least those seen before the kill),
    then the rest, at least one, on the survivor alone. The epoch of the switch is not pinned to the
    kill: what the test read when it killed (Tune's result.json) can lag the run by more than one epoch
    on a loaded machine (seen in CI: two epochs). Returns the last epoch run on the victim."""
    epochs = [int(r["epoch"]) for r in reports]
    assert epochs == list(range(1, EPOCHS + 1)), f"an epoch ran twice or not at all: {epochs}"
    nodes = [set(r["nodes"].split(",")) for r in reports]
    switch = next((i for i, n in enumerate(nodes) if victim not in n), len(nodes))
    assert switch >= killed_after, f"epochs seen on {victim} before the kill ran elsewhere: {nodes[:killed_after]}"
    assert switch < len(nodes), f"no epoch ran after the kill of {victim}: {nodes}"
    assert all(n == {survivor} for n in nodes[switch:]), f"after the switch, not on {survivor} alone: {nodes[switch:]}"
    return switch


# --- 1. a Tune sweep ------------------------------------------------------------------------------

# What Ray Data says when a trial's data tasks find no node with a whole free CPU (it then waits forever).
NO_CPU_FOR_DATA = "Cluster resources are not enough to run any task from TaskPoolMapOperator"


@pytest.mark.timeout(420)
def test_a_sweep_loses_a_node_and_its_trial_resumes_on_the_survivor(node_loss_cluster, drivers, tmp_path):
    cluster = node_loss_cluster
    workers = _workers(cluster)
    data = get_format("tracks").synthesize(tmp_path / "data", n=12, seed=0)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"epochs": EPOCHS}))
    store, log = tmp_path / "store", tmp_path / "tune.log"
    # two trials at once: each trial's Train worker takes 1.99 CPUs, so they run one on each worker
    # node; no early stopping, so every trial must reach its last epoch (ASHA could stop either one)
    proc = _facelab(cluster, drivers, ["tune", "--task", "tracks", "--data", str(data), "--samples", "2", "--max-concurrent", "2",
                              "--config", str(config), "--store", str(store), "--no-early-stop"], log, tmp_path)

    def trials():
        return {p.parent.name: _reports(p) for p in store.glob("tracks/sweeps/*/trial_*/result.json")}

    def both_running():  # each trial reported an epoch, on different workers, one of them far from its end
        now = trials()
        if len(now) == 2 and all(now.values()) and {r[-1]["nodes"] for r in now.values()} == set(workers):
            trial = min(now, key=lambda t: len(now[t]))
            return trial if int(now[trial][-1]["epoch"]) <= EPOCHS - 3 else None
        return None

    trial = _until("two trials running on the two workers", both_running, proc, log)
    victim = trials()[trial][-1]["nodes"]
    survivor = next(w for w in workers if w != victim)
    cluster.kill_worker(victim)
    killed_after = int(trials()[trial][-1]["epoch"])
    summary = _finish(proc, log, stuck=NO_CPU_FOR_DATA)

    assert summary["trials"] == 2 and summary["failed_trials"] == [] and summary["promoted"], summary
    # each trial's history as its last checkpoint carries it. Tune's result.json is not that record: a
    # report can be lost with the node after the trial's Train run checkpointed it (seen: epoch 3 in the
    # Train run's checkpoint snapshot, resumed from, missing from result.json)
    histories = {t: _final_history(store, t) for t in trials()}
    last_on_victim = _check_resumed(histories[trial], victim, survivor, killed_after)
    other = next(t for t in histories if t != trial)
    assert [int(r["epoch"]) for r in histories[other]] == list(range(1, EPOCHS + 1))
    print(f"sweep: trial {trial} ran epochs 1-{last_on_victim} on {victim}, the rest on {survivor}; "
          f"{other} on {sorted({r['nodes'] for r in histories[other]})}")


def _final_history(store: Path, trial: str) -> list[dict]:
    """The epoch records in the latest checkpoint of a trial's Train run (`train-<trial id>`)."""
    import torch

    run = next(store.glob(f"tracks/sweeps/*/train-{trial.split('_')[1]}"))
    latest = sorted(p for p in run.glob("checkpoint_*") if p.is_dir())[-1]  # named by the time they were made
    return torch.load(latest / "state.pt", map_location="cpu", weights_only=True)["history"]


# --- 2. Ray Train, one worker on each node ----------------------------------------------------------

@pytest.mark.timeout(420)
def test_training_with_a_worker_on_each_node_resumes_on_the_survivor(node_loss_cluster, drivers, tmp_path):
    cluster = node_loss_cluster
    workers = _workers(cluster)
    data = get_format("tracks").synthesize(tmp_path / "data", n=12, seed=0)
    name = "ddp-over-nodes"
    config = tmp_path / "ddp.json"
    # two Train workers of 1 CPU: CPU workers spread over the nodes (torch_train._scaling); the head's
    # CPU and the survivor's two still fit both
    config.write_text(json.dumps({"epochs": EPOCHS, "num_workers": 2, "cpus_per_worker": 1, "run_name": name}))
    store, log = tmp_path / "store", tmp_path / "train.log"
    import torch  # before the job starts: its epochs take about 2 s, its first import here longer

    proc = _facelab(cluster, drivers, ["train", "--task", "tracks", "--data", str(data), "--config", str(config),
                              "--store", str(store)], log, tmp_path)
    run = tmp_path / "train" / name

    def history():
        states = sorted(p for p in run.glob("checkpoint_*") if p.is_dir())
        if not states:
            return []
        try:
            return torch.load(states[-1] / "state.pt", map_location="cpu", weights_only=True)["history"]
        except (OSError, RuntimeError, EOFError):  # being written
            return []

    def spread():
        records = history()
        if records and int(records[-1]["epoch"]) <= EPOCHS - 3:
            return records if set(records[-1]["nodes"].split(",")) == set(workers) else None
        return None

    records = _until("an epoch trained on both workers", spread, proc, log)
    victim, survivor = workers
    cluster.kill_worker(victim)
    killed_after = int(records[-1]["epoch"])
    summary = _finish(proc, log)

    from facelab.store import ModelStore

    model = ModelStore(str(store)).load("tracks", summary["run_id"]).model_dir
    final = pd.read_csv(model / "history.csv").to_dict("records")
    assert [int(r["epoch"]) for r in final] == list(range(1, EPOCHS + 1)), final
    first = [r for r in final if int(r["epoch"]) <= killed_after]
    assert all(sorted(r["nodes"].split(",")) == workers for r in first), first  # DDP over both nodes
    # the group restarted on the nodes left (spread: the surviving worker and the head's CPU)
    resumed = [r for r in final if int(r["epoch"]) > killed_after + 1]
    left = {survivor, cluster.head_node}
    assert resumed and all(survivor in r["nodes"] and set(r["nodes"].split(",")) <= left for r in resumed), resumed
    print(f"train: epochs 1-{killed_after} on {first[-1]['nodes']}, resumed on {resumed[-1]['nodes']}")


# --- 3. a batch submission ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sentiment(node_loss_cluster, tmp_path_factory):
    """A promoted sentiment model (logistic regression, trained on the cluster) and its data."""
    tmp = tmp_path_factory.mktemp("sentiment")
    data = get_format("sentiment").synthesize(tmp / "data", n=12000, seed=2)
    config = tmp / "logreg.json"
    config.write_text(json.dumps({"model": "logreg", "ensemble_folds": 2}))
    started: list[subprocess.Popen] = []
    try:
        log = tmp / "train.log"
        _finish(_facelab(node_loss_cluster, started, ["train", "--task", "sentiment", "--data", str(data), "--config",
                                                      str(config), "--store", str(tmp / "store"), "--promote"], log, tmp),
                log)
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return data, tmp / "store"


def _map_workers(cluster, alive: bool = True) -> dict[str, str]:
    """The batch job's live predictor actors (Ray Data's map workers): actor id -> node id; with
    `alive=False`, every one there has been: actor id -> (state, node id)."""
    from ray.util.state import list_actors

    try:
        actors = list_actors(address=cluster.address, filters=[("state", "=", "ALIVE")] if alive else None, limit=1000,
                             raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 - the dashboard busy: ask again
        return {}
    return {a.actor_id: a.node_id if alive else (a.state, a.node_id) for a in actors if "MapWorker" in a.class_name}


@pytest.mark.timeout(300)
def test_a_submission_loses_a_node_and_writes_every_row_once(node_loss_cluster, sentiment, drivers, tmp_path):
    cluster = node_loss_cluster
    workers = _workers(cluster)
    data, store = sentiment
    expected = len(pd.read_csv(data / "test.csv"))
    # the same job without a kill: what the submission must be, and where its predictor actors ran
    reference, log = tmp_path / "reference.csv", tmp_path / "reference.log"
    args = ["submit", "--task", "sentiment", "--data", str(data), "--store", str(store), "--actors", "3"]
    proc = _facelab(cluster, drivers, [*args, "--out", str(reference)], log, tmp_path)
    spread: set[str] = set()
    while proc.poll() is None:
        spread |= set(_map_workers(cluster).values())
        time.sleep(0.1)
    _finish(proc, log)
    # spread over the nodes, not piled on one. Not "on both workers": Ray's SPREAD is best effort, and
    # in two CI runs (this module after three other cluster modules, a loaded machine) it put the 3
    # actors on the head and one worker, twice on that worker; the module alone spread them over all three
    assert len(spread) >= 2 and spread & set(workers), (
        f"predictor actors ran on {spread} (workers {workers}, head {cluster.head_node}); "
        f"every one: {_map_workers(cluster, alive=False)}")

    # again, and the first worker node to host a predictor actor is killed while the job runs
    out, log = tmp_path / "submission.csv", tmp_path / "submit.log"
    proc = _facelab(cluster, drivers, [*args, "--out", str(out)], log, tmp_path)
    victim = _until("a predictor actor on a worker", lambda: next(
        (node for node in _map_workers(cluster).values() if node in workers), None), proc, log)
    assert not out.exists()  # the job is under way
    cluster.kill_worker(victim)
    summary = _finish(proc, log, timeout=120)  # the job without the kill took under 30 s

    frame = pd.read_csv(out, keep_default_na=False)
    # every row predicted once: `rows` counts the predictions, and no row of the file is left unlabelled
    assert summary["rows"] == len(frame) == expected and summary["bad_rows"] == 0, summary
    assert (frame["label"] != "").all()
    assert frame.equals(pd.read_csv(reference, keep_default_na=False))
    print(f"submit: predictor actors on {sorted(spread)}; {victim} killed mid-job, {expected} rows each once")


# --- 4. Serve -----------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_serve_keeps_answering_when_a_node_with_a_replica_is_lost(node_loss_cluster, sentiment, drivers, tmp_path):
    cluster = node_loss_cluster
    workers = _workers(cluster)
    data, store = sentiment
    port = free_port()
    config = {
        "proxy_location": "HeadOnly",  # one proxy: every node of this cluster is on the same machine and port
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": "facelab", "route_prefix": "/", "import_path": "serve.app:build_app",
            "args": {"store": str(store), "tasks": ["sentiment"], "gallery": False},
            "deployments": [
                # the gateway beside the proxy on the head; the model's replicas one on each worker node
                {"name": "Gateway", "ray_actor_options": {"num_cpus": 0, "resources": {"head": 0.01}}},
                {"name": "sentiment", "num_replicas": 2, "max_replicas_per_node": 1,
                 "ray_actor_options": {"num_cpus": 1.5}},
            ],
        }],
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / "serve.log"
    proc = _facelab(cluster, drivers, ["serve", "--config", str(tmp_path / "serve.yaml")], log, tmp_path)
    url = f"http://127.0.0.1:{port}"
    embeddings = [json.loads(t) for t in pd.read_csv(data / "test.csv")["embeddings"].head(8)]

    def replicas():
        from ray.util.state import list_actors

        try:
            actors = list_actors(address=cluster.address, filters=[("state", "=", "ALIVE")], limit=1000,
                                 raise_on_missing_output=False)
        except Exception:  # noqa: BLE001
            return {}
        return {a.name: a.node_id for a in actors if (a.name or "").startswith("SERVE_REPLICA::facelab#sentiment#")}

    def answering():
        try:
            return httpx.post(f"{url}/sentiment", json={"embedding": embeddings[0]}, timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    _until("Serve answering", answering, proc, log, timeout=180)
    placed = _until("a replica on each worker", lambda: (lambda r: r if sorted(r.values()) == workers else None)(
        replicas()), proc, log)
    sent: list[tuple[float, int]] = []  # (when, status; 0 for no answer)
    done = threading.Event()

    def load():
        with httpx.Client(base_url=url, timeout=60) as client:
            i = 0
            while not done.is_set():
                try:
                    status = client.post("/sentiment", json={"embedding": embeddings[i % len(embeddings)]}).status_code
                except httpx.HTTPError:
                    status = 0
                sent.append((time.monotonic(), status))
                i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        _until("load before the kill", lambda: len(sent) >= 50, proc, log)
        victim, survivor = workers
        killed = time.monotonic()
        cluster.kill_worker(victim, wait_dead=True)
        # the load goes on for 10 s after the head declared the node dead, and 100 requests at least
        dead = time.monotonic()
        _until("load after the node's death", lambda: time.monotonic() > dead + 10
               and sum(t > killed for t, _ in sent) >= 100, proc, log)
        ended = time.monotonic()
    finally:
        done.set()
        for thread in threads:
            thread.join()
    during = [status for t, status in sent if killed <= t <= ended]
    failed = [status for status in during if status != 200]
    assert len(failed) <= 0.01 * len(during), collections.Counter(during)
    after = [status for t, status in sent if t > ended - 3]
    assert after and all(status == 200 for status in after), collections.Counter(after)  # still answering
    assert answering()
    left = replicas()
    assert survivor in left.values() and victim not in left.values(), left
    print(f"serve: replicas on {sorted(placed.values())}; {victim} killed; {len(during)} requests during the kill, "
          f"{len(failed)} failed ({collections.Counter(during)})")
