"""`facelab serve` / `python -m jobs.serve`: run the Serve application from its YAML config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.errors import FacelabError
from jobs.common import SERVE_CONFIG, Address, command, path_option



@command
def serve(
    config: Annotated[Optional[Path], path_option("--config", help="Serve config YAML (default serve/config.yaml)")] = None,
    address: Address = None,
) -> None:
    """Deploy the facelab Serve application (`serve run CONFIG`) and block until Ctrl-C."""
    config = config or SERVE_CONFIG
    if not config.is_file():
        raise FacelabError(f"{config}: Serve config not found")
    # like every facelab job: the given cluster, else $RAY_ADDRESS, else a fresh embedded local Ray
    argv = ["serve", "run", str(config), "--address", address or os.environ.get("RAY_ADDRESS") or "local"]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.execvp("serve", argv)


if __name__ == "__main__":
    typer.run(serve)
