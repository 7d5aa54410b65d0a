"""What every job entry point shares: options, one-line errors, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.errors import FacelabError

Task = Annotated[str, typer.Option("--task", "-t", help="task name, e.g. sentiment")]
DataDir = Annotated[Path, typer.Option("--data", help="the task's data folder, in the challenge's own layout")]
Store = Annotated[Optional[str], typer.Option("--store", help="model store URI (default $FACELAB_STORE or ~/.facelab/store)")]
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


def emit(result: dict) -> None:
    """A job's result: one JSON object on stdout."""
    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")


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
