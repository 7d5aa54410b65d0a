"""The `facelab` command: every job of the platform under one typed CLI.

Each command is also `python -m jobs.<name>` so `ray job submit -- python -m jobs.train ...` works.
"""

from __future__ import annotations

import typer

from jobs import data, demo, promote, score, serve, submit, train, tune

app = typer.Typer(help="facelab: train, tune, serve and batch-run face analysis on Ray.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(data.app, name="data")
app.command()(train.train)
app.command()(tune.tune)
app.command()(promote.promote)
app.command()(promote.runs)
app.command()(submit.submit)
app.command()(score.score)
app.command()(serve.serve)
app.command()(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
