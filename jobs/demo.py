"""`facelab demo` / `python -m jobs.demo`: every registered task end to end on small data, on a local Ray.

For each task: its demo data (synthetic, or a small conversion of real faces), a fit (one small
config, or for the cheap estimator tasks in SWEPT a short Tune sweep), a submission written by a Ray
Data batch job, its score as the challenge computes it; then one Serve application answers a good
and a malformed request for every task. The terminal gets one line per task and stage and a final
table; everything Ray, Tune and the models print goes to `<out>/demo.log`.

A task whose real data is absent is "skipped"; any other error (a sweep whose every trial failed
included) marks it FAILED and the demo exits 1.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer

from facelab.errors import FacelabError, RealDataMissing
from facelab.tasks import get_task, task_names
from jobs.common import Address, command, path_option, redirected_output, serve_application

# Tasks the demo tunes with a short sweep (cheap estimators, to show Ray Tune at work), with the
# values every trial holds: one model family and 3-fold CV keep each trial and the refit to seconds.
# Every other task trains once with its small `demo_config`; `facelab tune` sweeps any task in earnest.
SWEPT = {"sentiment": {"model": "svc", "cv_folds": 3, "ensemble_folds": 3}}
STAGES = ("data", "fit", "submit", "score", "serve")


@dataclass
class Outcome:
    """What the demo found for one task: a cell per column of the final table."""

    task: str
    status: str = "ok"  # ok | FAILED | skipped
    cells: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    data: Optional[Path] = None


class Progress:
    """One line per task and stage on the terminal: begun when the stage starts, ended with its result."""

    def __init__(self, terminal: TextIO, log: TextIO):
        self.terminal, self.log, self.started = terminal, log, time.perf_counter()

    def say(self, text: str) -> None:
        self.terminal.write(text + "\n")
        self.terminal.flush()

    @contextmanager
    def stage(self, outcome: Outcome, stage: str) -> Iterator[dict]:
        """Run one stage of a task; the body puts its one-line result in `note["text"]`. A failure
        is written to the log with its traceback and marks the task (skipped when its real data
        is absent, else FAILED); the caller's later stages see `outcome.status`."""
        note = {"text": ""}
        elapsed = time.perf_counter() - self.started
        self.terminal.write(f"[{elapsed:4.0f}s] {outcome.task:<11} {stage:<7}")
        self.terminal.flush()
        self.log.write(f"\n===== demo: {outcome.task} {stage} =====\n")
        self.log.flush()
        began = time.perf_counter()
        try:
            yield note
        except KeyboardInterrupt:
            outcome.status = outcome.cells[stage] = "interrupted"
            self.terminal.write(f" {time.perf_counter() - began:5.1f} s  interrupted\n")
            self.terminal.flush()
            raise
        except RealDataMissing as exc:
            outcome.status, note["text"] = "skipped", f"skipped: {exc}"
        except Exception as exc:  # noqa: BLE001 - keep going: the table shows what broke, the exit code says so
            traceback.print_exc(file=self.log)
            self.log.flush()
            outcome.status, note["text"] = "FAILED", f"FAILED: {type(exc).__name__}: {_one_line(str(exc), 160)}"
        took = time.perf_counter() - began
        outcome.seconds += took
        if outcome.status != "ok":
            outcome.cells[stage] = outcome.status
        self.terminal.write(f" {took:5.1f} s  {note['text']}\n")
        self.terminal.flush()


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _size(path: Path) -> str:
    files = [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return f"{len(files)} files, {size / 2**20:.1f} MB"


def describe_answer(content: bytes, content_type: str = "", width: int = 70) -> str:
    """A Serve answer in one short line: binary answers (a PNG face or image) summarised by their
    kind, size in pixels and bytes, never printed raw; JSON compacted; text cut to `width`."""
    kb = len(content) / 1024
    size = f"{kb:.1f} KB" if kb < 10 else f"{kb:.0f} KB"
    if content_type.startswith("image/") or content[:8] == b"\x89PNG\r\n\x1a\n" or content[:3] == b"\xff\xd8\xff":
        try:
            from PIL import Image

            with Image.open(io.BytesIO(content)) as image:
                return f"{image.format} {image.width}x{image.height}, {size}"
        except Exception:  # noqa: BLE001 - not decodable: say what it claims to be
            return f"{content_type or 'binary'}, {size}"
    try:
        text = json.dumps(json.loads(content), separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        text = content.decode("utf-8", "replace")
        if not text.isprintable():
            return f"{content_type or 'binary'}, {size}"
    return _one_line(text, width)


def _numbers(values: dict, first: str, n: int = 2) -> str:
    """The task's metric and the next numeric values of a metrics dict, as `name value` pairs."""
    numeric = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    keys = ([first] if first in numeric else []) + [k for k in numeric if k != first]
    return ", ".join(f"{k} {numeric[k]:.0f}" if float(numeric[k]).is_integer() else f"{k} {numeric[k]:.3f}"
                     for k in keys[:n])


def demo_data(task, out: Path) -> Path:
    """The task's demo data: a few real faces converted from the data root when the task declares
    such a conversion (`demo_conversion`) and the data root holds them, else its own synthetic set
    in `out`. Real faces are not redistributable, so their conversion goes to facelab's cache
    (outside the repository, where `runs/` lies), not into `out`."""
    if task.demo_conversion is not None:
        import shutil

        from facelab import config
        from facelab.converters import convert

        folder, options = task.demo_conversion
        if (config.data_root() / folder).is_dir():
            converted = config.cache_dir() / "demo-data" / task.name
            shutil.rmtree(converted, ignore_errors=True)
            convert(task.name, config.data_root(), converted, **options)
            return converted
    return task.demo_data(out)


def _run_task(outcome: Outcome, out: Path, store: str, samples: int, progress: Progress) -> None:
    """One task through data, fit, submit and score; a failed stage ends the task."""
    from facelab.predict import submit
    from facelab.train import train
    from tuning.runner import sweep

    task = get_task(outcome.task)
    with progress.stage(outcome, "data") as note:
        outcome.data = Path(demo_data(task, out / "data" / task.name)).resolve()
        note["text"] = outcome.cells["data"] = _size(outcome.data)
    if outcome.status != "ok":
        return
    with progress.stage(outcome, "fit") as note:
        if task.name in SWEPT:
            result = sweep(task.name, outcome.data, store, samples=samples, fixed=SWEPT[task.name])
            outcome.cells["fit"] = (f"tune {result['trials']} trials: {task.metric} "
                                    f"{result[f'trial_{task.metric}']:.3f}")
            note["text"] = f"{outcome.cells['fit']} (best {_config_summary(result['best_config'])})"
        else:
            config = task.demo_config
            run_id, metrics = train(task.name, outcome.data, store, config=config, promote=True)
            outcome.cells["fit"] = f"train: {_numbers(metrics, task.metric, 1) or 'stored'}"
            note["text"] = f"{outcome.cells['fit']} (run {run_id}, config {_config_summary(config)})"
    if outcome.status != "ok":
        return
    with progress.stage(outcome, "submit") as note:
        written = submit(task.name, outcome.data, out / "submissions" / task.name / task.format.submission_name, store)
        note["text"] = f"{written['rows']} rows -> {written['submission']}"
        submission = Path(written["submission"])
    if outcome.status != "ok":
        return
    with progress.stage(outcome, "score") as note:
        scores = task.format.score(submission, outcome.data / task.format.synthetic_truth)
        note["text"] = outcome.cells["score"] = _numbers(scores, task.metric)


def _config_summary(config: dict, keys: int = 3) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(config.items())[:keys]) or "defaults"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(outcomes: list[Outcome], store: str, progress: Progress) -> None:
    """Deploy one Serve application over every task that got this far, then send each a good and
    a malformed request: the good one must answer 200, the malformed one a 4xx."""
    import httpx
    from ray import serve

    ready = [o for o in outcomes if o.status == "ok"]
    if not ready:
        return
    deploy = Outcome("all")
    with progress.stage(deploy, "serve") as note:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(serve_application({"store": store, "tasks": [o.task for o in ready], "gallery": False}),
                  name="facelab", route_prefix="/")
        note["text"] = f"{_count(len(ready), 'task')} deployed on http://127.0.0.1:{port}"
    try:
        for outcome in ready:
            if deploy.status != "ok":
                outcome.status, outcome.cells["serve"] = "FAILED", "deploy failed"
                continue
            with progress.stage(outcome, "serve") as note:
                good, bad = get_task(outcome.task).demo_requests(outcome.data)
                began = time.perf_counter()
                answer = httpx.post(f"http://127.0.0.1:{port}/{outcome.task}", json=good, timeout=120)
                took = 1000 * (time.perf_counter() - began)
                rejected = httpx.post(f"http://127.0.0.1:{port}/{outcome.task}", json=bad, timeout=120)
                shown = describe_answer(answer.content, answer.headers.get("content-type", ""))
                outcome.cells["serve"] = f"{answer.status_code} in {took:.0f} ms; malformed {rejected.status_code}"
                note["text"] = f"HTTP {answer.status_code} in {took:.0f} ms: {shown}; malformed request: HTTP {rejected.status_code}"
                if answer.status_code != 200:
                    raise FacelabError(f"POST /{outcome.task}: HTTP {answer.status_code}: {shown}")
                if not 400 <= rejected.status_code < 500:
                    raise FacelabError(f"POST /{outcome.task} with a malformed body: HTTP {rejected.status_code}, not a 4xx")
    finally:
        serve.shutdown()


def table(outcomes: list[Outcome]) -> str:
    """The final table: one row per task, a column per stage's result."""
    columns = ("task", "status", "fit", "score", "serve", "seconds")
    rows = [[o.task, o.status, o.cells.get("fit", ""), o.cells.get("score", ""), o.cells.get("serve", ""),
             f"{o.seconds:.0f}"] for o in outcomes]
    widths = [max(len(str(r[i])) for r in [list(columns), *rows]) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


@command
def demo(
    out: Annotated[Optional[Path], path_option("--out", help="working folder (default runs/demo-<time>)")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help=f"Tune trials of the swept tasks ({', '.join(SWEPT)})")] = 2,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="comma-separated tasks (default: all)")] = None,
    address: Address = None,
) -> None:
    """Run every registered task end to end on small data: data, fit, submission, score, Serve.

    One line per task and stage, then a table of task / fit / score / serve; Ray's and Tune's own
    output goes to OUT/demo.log. Exits 1 when a task failed (a task whose real data is absent is
    skipped, not failed)."""
    from facelab.cluster import connect

    chosen = tasks.split(",") if tasks else task_names()
    for name in chosen:
        get_task(name)  # unknown names fail before any work
    out = (out or Path("runs") / f"demo-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    store, log_path = str(out / "store"), out / "demo.log"
    # before Ray starts, so its workers inherit them: no Ray Data progress bars, checkpoints under OUT
    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("FACELAB_TRAIN_STORAGE", str(out / "train"))
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops the demo, not just the sweep
    typer.echo(f"facelab demo: {_count(len(chosen), 'task')}, stages {', '.join(STAGES)}; outputs under {out}\n"
               f"Ray's, Tune's and the models' own output: {log_path}")
    outcomes = [Outcome(name) for name in chosen]
    started = time.perf_counter()
    with open(log_path, "a", buffering=1) as log, redirected_output(log, stderr=True) as terminal:
        progress = Progress(terminal, log)
        ray = connect(address, quiet=True)  # worker logs stay in Ray's session folder; no progress bars
        interrupted = False
        try:
            for outcome in outcomes:
                _run_task(outcome, out, store, samples, progress)
            _serve(outcomes, store, progress)
        except KeyboardInterrupt:  # the table of what ran so far, then exit 130 as a shell does
            interrupted = True
        finally:
            ray.shutdown()
    typer.echo(f"\n{table(outcomes)}\n\n{_count(len(outcomes), 'task')} in {time.perf_counter() - started:.0f} s; "
               f"outputs under {out}; log {log_path}")
    if interrupted:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130)
    failed = [o.task for o in outcomes if o.status == "FAILED"]
    if failed:
        typer.echo(f"error: tasks failed: {', '.join(failed)} (tracebacks in {log_path})", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(demo)
