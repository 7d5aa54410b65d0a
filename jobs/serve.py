"""`facelab serve` / `python -m jobs.serve`: run the Serve application from its YAML config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.errors import FacelabError
from jobs.common import Address, command

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "serve" / "config.yaml"


@command
def serve(
    config: Annotated[Optional[Path], typer.Option("--config", help="Serve config YAML (default serve/config.yaml)")] = None,
    address: Address = None,
) -> None:
    """Deploy the facelab Serve application (`serve run CONFIG`) and block until Ctrl-C."""
    config = config or DEFAULT_CONFIG
    if not config.is_file():
        raise FacelabError(f"{config}: Serve config not found")
    argv = ["serve", "run", str(config)]
    if address:
        argv += ["--address", address]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.execvp("serve", argv)


if __name__ == "__main__":
    typer.run(serve)
