"""What every job entry point shares: options, one-line errors, JSON output."""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional, TextIO

import typer

from facelab.errors import FacelabError
from facelab.tasks import task_names

# --- paths as a user gives them ---------------------------------------------------------------
# Tune trials, Train workers, Ray Data tasks and Serve replicas do not run in the driver's working
# directory, so every path a command is given is made absolute here, in the driver, by the option
# itself (a typer callback), before the command body runs and long before anything reaches a worker.

def absolute(path: Optional[Path]) -> Optional[Path]:
    """`path` made absolute against the working directory (`~` expanded); None stays None."""
    return None if path is None else Path(path).expanduser().resolve()


def store_location(uri: Optional[str]) -> Optional[str]:
    """A model store as given: a local folder made absolute; a filesystem URI (s3://, gs://, file://) as is."""
    if uri is None or "://" in uri:
        return uri
    return str(absolute(Path(uri)))


def path_option(*flags: str, help: str, **kwargs) -> Any:
    """A typer option for a file or folder, resolved to an absolute path as it is parsed."""
    return typer.Option(*flags, help=help, callback=absolute, **kwargs)


# The registered task names as a choice (help lists them, shell completion offers them); a StrEnum
# member is the name itself wherever a str is expected.
TaskName = enum.StrEnum("TaskName", {name: name for name in task_names()})
Task = Annotated[TaskName, typer.Option("--task", "-t", help="the task", case_sensitive=True)]
DataDir = Annotated[Path, path_option("--data", help="the task's data folder, in the challenge's own layout")]
Store = Annotated[Optional[str], typer.Option(
    "--store", callback=store_location,
    help="model store: a local folder or a filesystem URI (default $FACELAB_STORE or ~/.facelab/store)")]
ConfigFile = Annotated[Optional[Path], path_option("--config", help="YAML/JSON overrides of the task's default config")]
DataRoot = Annotated[Optional[Path], path_option("--data-root", help="real data (default $FACELAB_DATA_ROOT or ../shared/data)")]
Address = Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default $RAY_ADDRESS, else a local Ray)")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="keep going past bad rows; write them with their reason to a side file")]


def command(fn):
    """Run a job; a FacelabError (bad input, missing model) becomes one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FacelabError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def emit(result: dict, out: Optional[TextIO] = None) -> None:
    """A job's result: one JSON object on stdout (or on `out`, the stdout `redirected_output` yields)."""
    stream = out or sys.stdout
    stream.write(json.dumps(result, indent=2, default=str) + "\n")
    stream.flush()


def _file_descriptors(*streams) -> Optional[list[int]]:
    try:
        return [s.fileno() for s in streams]
    except (AttributeError, OSError, ValueError):  # not backed by a file, e.g. typer's CliRunner
        return None


@contextlib.contextmanager
def redirected_output(target: TextIO, *, stderr: bool = False) -> Iterator[TextIO]:
    """Inside, whatever this process writes to stdout (and, with `stderr`, to stderr) goes to `target`:
    Ray's and Tune's own printing (Tune's status tables, forwarded worker logs, progress bars) included,
    as the file descriptors themselves are redirected. Yields a stream on the original stdout, for the
    command's own output (its JSON result, or the demo's progress lines)."""
    streams = [sys.stdout, sys.stderr] if stderr else [sys.stdout]
    fds, target_fd = _file_descriptors(*streams), _file_descriptors(target)
    if fds is None or target_fd is None:  # Python-level streams only: redirect Python's writes
        original = sys.stdout
        with contextlib.redirect_stdout(target), (contextlib.redirect_stderr(target) if stderr else contextlib.nullcontext()):
            yield original
        return
    for stream in (*streams, target):
        stream.flush()
    saved = [os.dup(fd) for fd in fds]
    original = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    for fd in fds:
        os.dup2(target_fd[0], fd)
    try:
        yield original
    finally:
        for stream in streams:
            stream.flush()
        original.close()
        for fd, old in zip(fds, saved):
            os.dup2(old, fd)
            os.close(old)


SERVE_CONFIG = Path(__file__).resolve().parents[1] / "serve" / "config.yaml"


def serve_application(args: dict, config: Path = SERVE_CONFIG):
    """Build the Serve application named by the config's `import_path`, as `serve run` does."""
    import importlib

    import yaml

    import_path = yaml.safe_load(config.read_text())["applications"][0]["import_path"]
    module, attr = import_path.split(":")
    return getattr(importlib.import_module(module), attr)(args)


def load_config(path: Optional[Path]) -> dict:
    """A YAML or JSON file of config overrides."""
    if path is None:
        return {}
    import yaml

    if not path.is_file():
        raise FacelabError(f"{path}: config file not found")
    try:
        value = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FacelabError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FacelabError(f"{path}: a config file holds a mapping of keys to values")
    return value
