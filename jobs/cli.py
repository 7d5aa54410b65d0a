"""The `facelab` command: every job of the platform under one typed CLI.

Each command is also `python -m jobs.<name>` so `ray job submit -- python -m jobs.train ...` works.
"""

from __future__ import annotations

import typer

from jobs import config, data, demo, fuse, promote, score, serve, submit, train, tune
from jobs import synth as synth_job
from jobs.embed import embed
from jobs.detect_bench import detect_bench
from jobs.gallery import app as gallery_app

app = typer.Typer(help="facelab: train, tune, serve and batch-run face analysis on Ray.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(data.app, name="data")
app.add_typer(gallery_app, name="gallery")
app.add_typer(config.app, name="config")
app.command()(train.train)
app.command()(tune.tune)
app.command(name="fuse-mesh")(fuse.fuse_mesh)
app.command()(promote.promote)
app.command()(promote.runs)
app.command()(submit.submit)
app.command()(score.score)
app.command()(serve.serve)
app.command()(demo.demo)
app.command(name="synth")(synth_job.synth)
app.command()(embed)
app.command(name="detect-bench")(detect_bench)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
