"""Serve under load, against the server a user would otherwise write (issue 19, part 6).

For an embedding task (sentiment), an image CNN (age-gender) and a dlib task (detect), in one run
(verify is left out: its predictor caches encodings by image content, so repeated sample images
would measure the cache):
- **throughput**: a bounded number of concurrent clients, closed loop, for a bounded time against
  `facelab serve` (the full gateway: keys off, limits on, replicas and batching from the config) and
  against bench/serve_baseline.py (one uvicorn process, the same predictor, one request at a time),
  interleaved; requests per second, p50 and p99 latency, answers by status;
- **latency at 80% load**: an open loop at 80% of each side's measured maximum; goal p99 <= 3x p50;
- **replica failure**: two replicas of the CNN task, one killed (`ray.kill` of its actor) in the
  middle of the load: failed requests, failures after the replacement was up, seconds to replace;
- **cold start**: seconds from `facelab serve` (its own new Ray) to the first 200 from every task;
- **Serve's own cost per request**: sentiment's model work is next to nothing, so the CPU-seconds
  facelab spends per sentiment request (CPUs / its requests per second, less the baseline's) is what
  the HTTP proxy, the gateway and the hops between them cost; with it, the best ratio each image task
  can reach on these CPUs (its work spread over every CPU, that cost added to each request).

Both sides answer the same sample requests first (labels equal, numbers within 1e-4).

    python bench/serve_load.py [--size tiny|small|large]
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pandas as pd
import yaml
from harness import REPO, WORK, agree, arguments, case, cpus, main_guard, record, repeats_for

VENV_BIN = Path(sys.executable).parent
SECONDS = {"tiny": 1.5, "small": 3.0, "large": 20.0}
CLIENTS = 16
KILLED_TASK = "age-gender"


# --- the models and the requests -------------------------------------------------------------------
def build_store(root: Path, tasks: list[str]) -> Path:
    """A store with one promoted run per task: small data, the task's real model sizes (the CNN at
    its default 112 px / width 64, one epoch: serving cost, not quality, is measured)."""
    from facelab.formats import get_format
    from facelab.train import train

    store = root / "store"
    configs = {"sentiment": {"model": "logreg", "ensemble_folds": 2},
               "age-gender": {"epochs": 1, "batch_size": 32, "warmup_epochs": 0},
               "detect": {"model": "hog", "min_side": 160, "pad": 0.15}}
    sizes = {"sentiment": {"n": 400}, "age-gender": {"n": 64}, "detect": {}}
    for task in tasks:
        data = get_format(task).synthesize(root / task, seed=0, **sizes[task])
        train(task, data, str(store), config=configs[task], promote=True)
    return store


def sample_bodies(store_root: Path, tasks: list[str], n: int = 32) -> dict[str, list[dict]]:
    """JSON bodies per task: embeddings from the synthetic test set; real UTKFace face photos
    (from the data root) for the image tasks, else the synthetic ones."""
    from facelab.config import data_root

    bodies: dict[str, list[dict]] = {}
    if "sentiment" in tasks:
        frame = pd.read_csv(store_root / "sentiment" / "test.csv").head(n)
        bodies["sentiment"] = [{"embedding": json.loads(e)} for e in frame["embeddings"]]
    images = sorted((data_root() / "utkface" / "images").glob("*.jpg"))[:: 97][:n]
    if not images:
        images = sorted((store_root / "age-gender").rglob("*.jpg"))[:n]
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
    for task in ("age-gender", "detect"):
        if task in tasks:
            bodies[task] = [{"image": e} for e in encoded]
    return bodies


def serve_cost_bound(rps: dict[str, dict[str, float]], cpus: int) -> tuple[float, dict[str, float]]:
    """Serve's own CPU-seconds per request, from sentiment (whose model work is next to nothing):
    CPUs / facelab's requests per second, less the baseline's seconds per request (what one plain
    request costs: HTTP, JSON, the model). With it, the best ratio for each other task: its baseline
    seconds per request (its work) spread over every CPU, plus that cost, against the baseline."""
    overhead = max(0.0, cpus / rps["sentiment"]["facelab"] - 1 / rps["sentiment"]["baseline"])
    best = {task: (cpus / (1 / sides["baseline"] + overhead)) / sides["baseline"]
            for task, sides in rps.items() if task != "sentiment"}
    return overhead, best


# --- the two servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_config(store: Path, tasks: list[str], out: Path) -> Path:
    """serve/config.yaml as shipped (sentiment autoscales), with the bench's store and tasks, no gallery,
    and two replicas of every other task."""
    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    args = config["applications"][0]["args"]
    args.update(store=str(store), tasks=tasks, gallery=False)
    args["task_deployments"] = {"default": {"num_replicas": 2, "max_ongoing_requests": 32}}
    config["applications"][0]["deployments"] = [d for d in config["applications"][0]["deployments"]
                                                if d["name"] != "GalleryModel"]
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def start(argv: list[str], env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    handle = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C first (`serve run` then shuts its application down), then SIGKILL of the group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(url: str, bodies: dict[str, list[dict]], process: subprocess.Popen, limit: float = 300) -> float:
    """Seconds until every task answered one request with 200."""
    begin, pending = time.monotonic(), set(bodies)
    with httpx.Client(base_url=url, timeout=30) as client:
        while pending:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}) before answering")
            if time.monotonic() - begin > limit:
                raise RuntimeError(f"no 200 from {sorted(pending)} within {limit} s")
            for task in sorted(pending):
                try:
                    if client.post(f"/{task}", json=bodies[task][0]).status_code == 200:
                        pending.discard(task)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
    return time.monotonic() - begin


# --- load --------------------------------------------------------------------------------------------
async def _post(http: httpx.AsyncClient, task: str, body: dict):
    """One request's status (or "connection" when it got no answer)."""
    try:
        return (await http.post(f"/{task}", json=body)).status_code
    except httpx.HTTPError:
        return "connection"


async def _closed_loop(url: str, task: str, bodies: list[dict], seconds: float, clients: int,
                       until: Callable[[], bool] | None = None) -> dict:
    """`clients` clients, each sending its next request when the last one is answered, for `seconds`
    (and then on until `until()` says so)."""
    latencies, statuses, events = [], [], []
    begin = time.monotonic()
    deadline = begin + seconds

    def going() -> bool:
        return time.monotonic() < deadline or (until is not None and not until())

    async def client(k: int, http: httpx.AsyncClient):
        i = k
        while going():
            sent = time.monotonic()
            status = await _post(http, task, bodies[i % len(bodies)])
            latencies.append(time.monotonic() - sent)
            statuses.append(status)
            events.append((time.monotonic() - begin, status))
            i += clients

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    return {**_summary(latencies, statuses, time.monotonic() - begin), "events": events}


async def _open_loop(url: str, task: str, bodies: list[dict], seconds: float, rate: float) -> dict:
    """Requests sent at a fixed rate whatever the answers do; latency counted from the planned send."""
    latencies, statuses = [], []

    async def one(i: int, planned: float, http: httpx.AsyncClient):
        status = await _post(http, task, bodies[i % len(bodies)])
        latencies.append(time.monotonic() - planned)
        statuses.append(status)

    begin, sent = time.monotonic(), []
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=256)) as http:
        for i in range(max(1, int(seconds * rate))):
            planned = begin + i / rate
            await asyncio.sleep(max(0.0, planned - time.monotonic()))
            sent.append(asyncio.create_task(one(i, planned, http)))
        await asyncio.gather(*sent)
    return _summary(latencies, statuses, time.monotonic() - begin)


def _summary(latencies: list[float], statuses: list, seconds: float) -> dict:
    ok = [lat for lat, s in zip(latencies, statuses) if s == 200]
    counts = pd.Series([str(s) for s in statuses]).value_counts().to_dict() if statuses else {}
    return {"requests": len(statuses), "seconds": seconds, "rps": len(ok) / seconds,
            "p50_ms": 1000 * float(np.percentile(ok, 50)) if ok else None,
            "p99_ms": 1000 * float(np.percentile(ok, 99)) if ok else None, "statuses": counts}


def check_same_answers(urls: dict[str, str], bodies: dict[str, list[dict]]) -> dict[str, float]:
    """Both servers' answers to the first requests of every task: labels equal, numbers within 1e-4."""
    worst = {}
    for task, task_bodies in bodies.items():
        answers = {}
        for side, url in urls.items():
            with httpx.Client(base_url=url, timeout=60) as client:
                answers[side] = [client.post(f"/{task}", json=b).json() for b in task_bodies[:8]]
        flat = {side: [_leaves(a) for a in got] for side, got in answers.items()}
        base, mine = flat["baseline"], flat["facelab"]
        agree([[x for x in row if isinstance(x, str)] for row in base],
              [[x for x in row if isinstance(x, str)] for row in mine], what=f"{task} labels")
        worst[task] = agree(np.array([[x for x in row if not isinstance(x, str)] for row in base], dtype=float),
                            np.array([[x for x in row if not isinstance(x, str)] for row in mine], dtype=float),
                            tolerance=1e-4, what=f"{task} numbers")
    return worst


def _leaves(answer) -> list:
    if isinstance(answer, dict):
        return [leaf for key in sorted(answer) for leaf in _leaves(answer[key])]
    if isinstance(answer, list):
        return [leaf for item in answer for leaf in _leaves(item)]
    return [answer] if isinstance(answer, (str, int, float)) and not isinstance(answer, bool) else []


# --- replica failure -----------------------------------------------------------------------------------
def kill_one_replica(url: str, bodies: list[dict], seconds: float) -> dict:
    """Closed-loop load on the CNN task; after a third of it, `ray.kill` one of its two replicas; the
    load goes on until 5 s after the replacement answered /tasks. Counts failures, and failures
    after the replacement was up."""
    import threading

    import ray

    replicas = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith(f"SERVE_REPLICA::facelab#{KILLED_TASK}#"))
    if len(replicas) < 2:
        raise RuntimeError(f"expected two replicas of {KILLED_TASK}, found {replicas}")
    marks: dict[str, float] = {}

    def killer():
        time.sleep(seconds / 3)
        marks["killed"] = time.monotonic()
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() - marks["killed"] < 120:
                served = client.get("/tasks").json()
                tags = [r["replica"] for t in served if t["task"] == KILLED_TASK for r in t["replicas"]]
                if len(tags) == 2 and not any(replicas[0].endswith(f"#{tag}") for tag in tags):
                    marks["replaced"] = time.monotonic()
                    return
                time.sleep(0.25)

    def settled() -> bool:  # 5 s of load after the replacement is up (at most 2 minutes after the kill)
        now = time.monotonic()
        return ("replaced" in marks and now > marks["replaced"] + 5) or now > begin + seconds / 3 + 120

    watcher = threading.Thread(target=killer)
    begin = time.monotonic()
    watcher.start()
    result = asyncio.run(_closed_loop(url, KILLED_TASK, bodies, seconds, clients=8, until=settled))
    watcher.join()
    replaced = marks.get("replaced")
    after = [s for t, s in result["events"] if replaced and begin + t > replaced]
    failed = sum(1 for _, s in result["events"] if s != 200)
    return {"task": KILLED_TASK, "requests": len(result["events"]), "failed": failed,
            "failed_share": failed / max(1, len(result["events"])),
            "failed_after_replacement": sum(1 for s in after if s != 200),
            "replacement_s": None if replaced is None else replaced - marks["killed"],
            "requests_after_replacement": len(after)}


# --- the run -------------------------------------------------------------------------------------------
def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    import ray

    from facelab.cluster import connect

    tasks = ["sentiment"] if args.size == "tiny" else ["sentiment", "age-gender", "detect"]
    seconds, repeats = SECONDS[args.size], repeats_for(args)
    work = WORK / f"serve_load-{args.size}"  # the store and its data, kept between runs (not timed)
    env = {"RAY_AUTH_MODE": "disabled", "FACELAB_API_KEYS": "", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    os.environ.update(env)
    connect(None, quiet=True)
    if not (work / "ready").is_file():
        print(f"building the store in {work} ({', '.join(tasks)}; not timed)", flush=True)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        began = time.monotonic()
        build_store(work, tasks)
        (work / "ready").write_text("ok\n")
        print(f"store built in {time.monotonic() - began:.0f} s", flush=True)
    store = work / "store"
    bodies = sample_bodies(work, tasks)
    config = serve_config(store, tasks, work / "serve.yaml")
    facelab = str(VENV_BIN / "facelab")

    # cold start: `facelab serve` with its own new Ray, as a user starts it
    port = free_port()
    cold = start([facelab, "serve", "--config", str(config), "--port", str(port)], env, work / "cold.log")
    try:
        cold_s = wait_ready(f"http://127.0.0.1:{port}", bodies, cold)
    finally:
        stop(cold)
    print(f"cold start: {cold_s:.1f} s to a 200 from every task ({', '.join(tasks)})", flush=True)

    # the load runs: `facelab serve` on this driver's Ray (so a replica can be killed from here), and the baseline
    urls = {"baseline": f"http://127.0.0.1:{free_port()}", "facelab": f"http://127.0.0.1:{free_port()}"}
    gcs = ray.get_runtime_context().gcs_address
    servers = {
        "facelab": start([facelab, "serve", "--config", str(config), "--port", urls["facelab"].rsplit(":", 1)[1],
                          "--address", gcs], env, work / "serve.log"),
        "baseline": start([sys.executable, "-m", "uvicorn", "--app-dir", str(REPO / "bench"), "serve_baseline:app",
                           "--port", urls["baseline"].rsplit(":", 1)[1], "--log-level", "warning"],
                          {**env, "BENCH_STORE": str(store)}, work / "baseline.log"),
    }
    try:
        for side, process in servers.items():
            wait_ready(urls[side], bodies, process)
        worst = check_same_answers(urls, bodies)
        print(f"same answers on both sides (largest numeric difference per task: {worst})", flush=True)
        cases, load, medians = [], {}, {}
        for task in tasks:
            per_request = {"baseline": [], "facelab": []}
            runs = {"baseline": [], "facelab": []}
            for round_ in range(repeats):
                for side in ("baseline", "facelab"):
                    got = asyncio.run(_closed_loop(urls[side], task, bodies[task], seconds, CLIENTS))
                    got.pop("events")
                    runs[side].append(got)
                    per_request[side].append(1 / max(got["rps"], 1e-9))
                    print(f"  {task} round {round_ + 1}/{repeats} {side}: {got['rps']:.1f} req/s, "
                          f"p50 {got['p50_ms']:.0f} ms, p99 {got['p99_ms']:.0f} ms, {got['statuses']}", flush=True)
            at80 = {}
            for side in ("baseline", "facelab"):
                rate = 0.8 * statistics.median(r["rps"] for r in runs[side])
                at80[side] = {"rate": rate, **asyncio.run(_open_loop(urls[side], task, bodies[task], seconds, rate))}
                ratio = (at80[side]["p99_ms"] or 0) / (at80[side]["p50_ms"] or 1)
                at80[side]["p99_over_p50"] = ratio
                print(f"  {task} at 80% load ({rate:.1f} req/s) {side}: p50 {at80[side]['p50_ms']:.0f} ms, "
                      f"p99 {at80[side]['p99_ms']:.0f} ms (p99/p50 {ratio:.1f}; goal <= 3)", flush=True)
            goal = None if task == "sentiment" else 1.7
            cases.append(case(f"{task}: requests/s, {CLIENTS} clients", per_request, 1, "request", goal=goal,
                              closed_loop={side: runs[side] for side in runs}, at_80_percent=at80,
                              note=f"p99/p50 at 80% load: facelab {at80['facelab']['p99_over_p50']:.1f}, "
                                   f"baseline {at80['baseline']['p99_over_p50']:.1f}"))
            load[task] = at80
            medians[task] = {side: statistics.median(r["rps"] for r in runs[side]) for side in runs}
        failure = None
        if KILLED_TASK in tasks:
            failure = kill_one_replica(urls["facelab"], bodies[KILLED_TASK], max(4 * seconds, 15.0))
            print(f"replica killed under load: {failure}", flush=True)
    finally:
        for process in servers.values():
            stop(process)
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()
    figures = [f"cold start: {cold_s:.1f} s from `facelab serve` to a 200 from every task ({', '.join(tasks)})"]
    bound = None
    if len(medians) > 1:
        overhead, best = serve_cost_bound(medians, cpus())
        bound = {"serve_cpu_ms_per_request": 1000 * overhead, "best_ratio": best}
        figures.append(
            f"Serve's own cost: {1000 * overhead:.1f} CPU-ms per request (sentiment: {cpus()} CPUs / "
            f"{medians['sentiment']['facelab']:.0f} req/s, less the baseline's {1000 / medians['sentiment']['baseline']:.1f} ms); "
            "with the task's work on every CPU and that cost added, the best ratio on this machine: "
            + ", ".join(f"{task} {ratio:.2f}x (baseline {1000 / medians[task]['baseline']:.1f} ms a request"
                        f"{'; goal 1.7x out of reach' if ratio < 1.7 else ''})" for task, ratio in best.items()))
        print(figures[-1], flush=True)
    if failure:
        figures.append(f"replica killed under load ({KILLED_TASK}, 2 replicas): {failure['failed']} of "
                       f"{failure['requests']} requests failed, {failure['failed_after_replacement']} after the "
                       f"replacement was up ({failure['replacement_s'] and round(failure['replacement_s'], 1)} s)")
    record("serve_load", {"cases": cases, "figures": figures, "cold_start_s": cold_s, "replica_kill": failure,
                          "seconds_per_phase": seconds, "clients": CLIENTS, "cpus_used": cpus(),
                          "answers_max_difference": worst, "serve_cost": bound}, args)
    return 0


if __name__ == "__main__":
    main_guard(main)
