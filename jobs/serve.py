"""`facelab serve` / `python -m jobs.serve`: run the Serve application from its YAML config.

The HTTP proxy listens where `--host`, else the config's `http_options.host`, else 127.0.0.1 says.
Listening beyond the loopback with no API key configured is refused unless `--insecure`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.access import check_exposure, load_keys
from facelab.errors import FacelabError
from jobs.common import SERVE_CONFIG, Address, command, load_config, path_option

DEFAULT_HOST = "127.0.0.1"


def resolve_config(config: Path, host: Optional[str] = None, port: Optional[int] = None, insecure: bool = False,
                   environ: Optional[dict] = None) -> dict:
    """The Serve config to run: `config` with the proxy's host (and port) resolved, checked that
    it does not listen beyond the loopback without API keys (unless `insecure`)."""
    if not config.is_file():
        raise FacelabError(f"{config}: Serve config not found")
    resolved = load_config(config)
    http = dict(resolved.get("http_options") or {})
    http["host"] = host or http.get("host") or DEFAULT_HOST
    if port is not None:
        http["port"] = port
    resolved["http_options"] = http
    apps = resolved.get("applications") or [{}]
    keys_file = (apps[0].get("args") or {}).get("api_keys_file")
    check_exposure(http["host"], load_keys(keys_file, environ), insecure)
    return resolved


@command
def serve(
    config: Annotated[Optional[Path], path_option("--config", help="Serve config YAML (default serve/config.yaml)")] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="address the HTTP proxy listens on "
                                                "(default: the config's, else 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="HTTP port (default: the config's)")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="listen beyond the loopback without API keys")] = False,
    address: Address = None,
) -> None:
    """Deploy the facelab Serve application (`serve run CONFIG`) and block until Ctrl-C."""
    import yaml

    config = config or SERVE_CONFIG
    resolved = resolve_config(config, host, port, insecure)
    with tempfile.NamedTemporaryFile("w", prefix="facelab-serve-", suffix=".yaml", delete=False) as out:
        yaml.safe_dump(resolved, out, sort_keys=False)
    # like every facelab job: the given cluster, else $RAY_ADDRESS, else a fresh embedded local Ray
    # Serve's CLI from this interpreter (`python -m ray.serve.scripts`), not whatever `serve` is on PATH
    argv = [sys.executable, "-m", "ray.serve.scripts", "run", out.name,
            "--address", address or os.environ.get("RAY_ADDRESS") or "local"]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    typer.echo(f"facelab serve: http://{resolved['http_options']['host']}:{resolved['http_options'].get('port', 8000)}/",
               err=True)
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    typer.run(serve)
