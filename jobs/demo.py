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
from facelab.errors import FacelabError
from facelab.formats import FORMAT_NAMES, get_format
from facelab.predict import submit as write_submission
from facelab.train import train
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


def _demo_data(task, out: Path) -> Path:
    """The task's demo data: a few real faces converted from the data root when the task declares
    such a conversion (`demo_conversion`) and the data root holds them, else its own synthetic set."""
    if task.demo_conversion is not None:
        from facelab import config
        from facelab.converters import convert

        folder, options = task.demo_conversion
        if (config.data_root() / folder).is_dir():
            convert(task.name, config.data_root(), Path(out), **options)
            return Path(out)
    return task.demo_data(out)


def _run_task(name: str, data: Path, out: Path, store: str, samples: int, table: list) -> Path:
    """One task through the four doors: its demo data, tune (or one small fit), submit, score."""
    task = get_task(name)
    started = time.perf_counter()
    typer.echo(f"[demo] {name}: data")
    data = _demo_data(task, data)
    demo_config = getattr(task, "demo_config", None)
    if demo_config is not None:
        typer.echo(f"[demo] train {name} (small config)")
        run_id, metrics = train(name, data, store, config=demo_config, promote=True)
        table.append((name, f"train: {task.metric}", f"{metrics.get(task.metric, float('nan')):.3f} (run {run_id})"))
    else:
        typer.echo(f"[demo] tune {name} ({samples} trials)")
        result = sweep(name, data, store, samples=samples)
        table.append((name, f"tune: best trial {task.metric}", f"{result[f'trial_{task.metric}']:.3f} ({_summary(result['best_config'])})"))
    typer.echo(f"[demo] submit {name}")
    sub = write_submission(name, data, out / "submissions" / name / task.format.submission_name, store)
    scores = task.format.score(Path(sub["submission"]), data / task.format.synthetic_truth)
    shown = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    table.append((name, "submission: " + ", ".join(list(shown)[:4]), ", ".join(f"{v:.3f}" for v in list(shown.values())[:4])))
    took = time.perf_counter() - started
    typer.echo(f"[demo] {name} done in {took:.0f} s")
    table.append((name, "seconds: data, fit, submit, score", f"{took:.0f}"))
    return data


def _summary(config: dict, keys: int = 3) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(config.items())[:keys])


@command
def demo(
    out: Annotated[Optional[Path], typer.Option("--out", help="working folder (default runs/demo-<time>)")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Tune trials per task")] = 8,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="comma-separated tasks (default: all)")] = None,
    address: Address = None,
) -> None:
    """Run every piece of facelab end to end on small data and print task / metric / score.

    Fast tasks are swept by Tune (`--samples` trials); deep-learning tasks (those with a
    `demo_config`) train once with a small config; `facelab tune` sweeps them in earnest."""
    chosen = tasks.split(",") if tasks else task_names()
    for name in chosen:
        get_task(name)  # unknown names fail before any work
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
        task_data, failed = {}, []
        for name in chosen:
            try:
                task_data[name] = _run_task(name, data / "tasks" / name, out, store, samples, table)
            except FacelabError as exc:  # e.g. the real data a face task needs is absent
                table.append((name, "skipped", str(exc)[:80]))
            except Exception as exc:  # keep going: the table shows what broke, the exit code says so
                table.append((name, "FAILED", f"{type(exc).__name__}: {str(exc)[:70]}"))
                failed.append(name)
        typer.echo("[demo] serve")
        table += _serve_and_query(store, list(task_data), task_data)
    finally:
        ray.shutdown()
    width = max(len(r[1]) for r in table)
    typer.echo("\n" + "task".ljust(10) + " " + "metric".ljust(width) + "  score")
    for task_name, metric, value in table:
        typer.echo(f"{task_name:<10} {metric:<{width}}  {value}")
    typer.echo(f"\nall outputs under {out}")
    if failed:
        typer.echo(f"error: tasks failed: {', '.join(failed)}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(demo)
