"""`ray job submit` against a real head node started with `ray start --head` on 127.0.0.1."""

import json
import shutil
import subprocess
import sys
import time

import pytest

from local_cluster import BIN, REPO
from facelab.formats import get_format
from facelab.store import ModelStore


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
