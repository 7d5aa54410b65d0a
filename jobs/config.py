"""`facelab config show --task T`: a task's default config as YAML, one description per key,
ready to edit and pass back with `--config` (to train or tune)."""

from __future__ import annotations

import typer

from facelab.tasks import get_task
from jobs.common import Task, command

app = typer.Typer(help="Task configs: every key's default and meaning.", no_args_is_help=True)


@app.command()
@command
def show(task: Task) -> None:
    """Print TASK's default config as YAML, each key under a one-line description."""
    from facelab.task_config import describe_yaml

    name = str(task)
    typer.echo(describe_yaml(name, get_task(name).Config), nl=False)


if __name__ == "__main__":
    app()
