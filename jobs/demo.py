"""`facelab demo` / `python -m jobs.demo`: the whole platform on synthetic data, on a local Ray.

Makes synthetic data for every challenge format, tunes and promotes every trainable task,
writes and scores each submission, deploys Serve and queries it, prints a table, shuts down.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cluster import connect
from facelab.formats import FORMAT_NAMES, get_format
from facelab.predict import submit as write_submission
from facelab.tasks import get_task, task_names
from jobs.common import Address, command, serve_application
from tuning.runner import sweep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_query(store: str, tasks: list[str], data: dict[str, Path]) -> list[tuple[str, str, str]]:
    """Deploy the Serve app on a free local port and send each task a good and a bad request."""
    import httpx
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(serve_application({"store": store, "tasks": tasks}), name="facelab", route_prefix="/")
    rows = []
    try:
        for name in tasks:
            good, bad = get_task(name).demo_requests(data[name])
            started = time.perf_counter()
            answer = httpx.post(f"http://127.0.0.1:{port}/{name}", json=good, timeout=60)
            took = time.perf_counter() - started
            rejected = httpx.post(f"http://127.0.0.1:{port}/{name}", json=bad, timeout=60)
            rows.append((name, "serve: good request", f"HTTP {answer.status_code} in {took * 1000:.0f} ms: {answer.text[:60]}"))
            rows.append((name, "serve: malformed request", f"HTTP {rejected.status_code}"))
    finally:
        serve.shutdown()
    return rows


def _summary(config: dict, keys: int = 3) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(config.items())[:keys])


@command
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", help="working folder (default runs/demo-<time>)")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Tune trials per task")] = 8,
    address: Address = None,
) -> None:
    """Run every piece of facelab end to end on synthetic data and print task / metric / score."""
    ray = connect(address)
    out = out or Path("runs") / f"demo-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    data, store = out / "data", str((out / "store").resolve())
    table: list[tuple[str, str, str]] = []
    try:
        for name in FORMAT_NAMES:
            typer.echo(f"[demo] synthetic {name} data, read back through Ray Data")
            fmt = get_format(name)
            fmt.synthesize(data / name, seed=0)
            counts = {split: fmt.read(data / name, split) for split in fmt.splits}
            table.append((name, "synthetic data: rows per split (bad)", ", ".join(
                f"{split} {read.dataset.count()} ({len(read.bad)})" for split, read in counts.items())))
        task_data = {}
        for name in task_names():
            task = get_task(name)
            typer.echo(f"[demo] {name}: data")
            task_data[name] = task.demo_data(data / "tasks" / name)
            typer.echo(f"[demo] tune {name} ({samples} trials)")
            result = sweep(name, task_data[name], store, samples=samples)
            table.append((name, f"tune: best trial CV {task.metric}", f"{result[f'trial_{task.metric}']:.3f} ({_summary(result['best_config'])})"))
            typer.echo(f"[demo] submit {name}")
            sub = write_submission(name, task_data[name], out / "submissions" / name / task.format.submission_name, store)
            scores = task.format.score(Path(sub["submission"]), task_data[name] / task.format.synthetic_truth)
            table.append((name, "submission: " + ", ".join(scores), ", ".join(f"{v:.3f}" for v in scores.values())))
        typer.echo("[demo] serve")
        table += _serve_and_query(store, task_names(), task_data)
    finally:
        ray.shutdown()
    width = max(len(r[1]) for r in table)
    typer.echo("\n" + "task".ljust(10) + " " + "metric".ljust(width) + "  score")
    for task_name, metric, value in table:
        typer.echo(f"{task_name:<10} {metric:<{width}}  {value}")
    typer.echo(f"\nall outputs under {out}")


if __name__ == "__main__":
    typer.run(demo)
