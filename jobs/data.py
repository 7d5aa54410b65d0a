"""`facelab data ...` / `python -m jobs.data ...`: make data in the challenge layouts."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.converters import converter_names
from facelab.tasks import get_task
from jobs.common import Address, DataRoot, Store, Task, command, emit, path_option

# what `data convert` builds: the converters the tasks declare (`Task.converters`), e.g. mask-voc for mask
ConverterName = enum.StrEnum("ConverterName", {name: name for name in converter_names()})

app = typer.Typer(help="Make data in the challenge layouts.", no_args_is_help=True)


@app.command()
@command
def synth(
    task: Task,
    out: Annotated[Path, path_option("--out", help="folder to write the data set into")],
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="size (rows, images, crowds or people; per format)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write a seeded synthetic data set in exactly TASK's challenge layout."""
    kwargs = {"n": n} if n else {}
    written = get_task(task).format.synthesize(out, seed=seed, **kwargs)
    emit({"task": task, "out": str(written)})


@app.command()
@command
def convert(
    task: Annotated[ConverterName, typer.Option("--task", "-t", help="the converter (a task's, or mask-voc)")],
    out: Annotated[Path, path_option("--out", help="folder to write the challenge-layout data set into")],
    data_root: DataRoot = None,
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="size where the converter takes one (e.g. crowds)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    split: Annotated[Optional[str], typer.Option(
        "--split", help="age-bins, fairface: 'utkface' keeps the age-gender task's split (same test faces); default stratified (age-bins) or a seeded shuffle (fairface)")] = None,
    blur: Annotated[Optional[str], typer.Option(
        "--blur", help="deblur: 'strong' (Gaussian sigma 2.5-5 or motion 13-21 px); default the milder mix")] = None,
) -> None:
    """Build TASK's challenge layout from the real face data under the data root."""
    from facelab import config
    from facelab.converters import convert as run_converter

    options = {"seed": seed, **({"n": n} if n else {}), **({"split": split} if split else {}),
               **({"blur": blur} if blur else {})}
    emit(run_converter(task, data_root or config.data_root(), out, **options))


@app.command()
@command
def fuse(
    data: Annotated[Path, path_option("--data", help="a FairFace-layout folder (facelab data convert --task fairface)")],
    out: Annotated[Path, path_option("--out", help="folder to write the fused copy into")],
    backbone: Annotated[str, typer.Option("--backbone", help="backbone run: 'promoted' or a run id")] = "promoted",
    store: Store = None,
    data_root: DataRoot = None,
    actors: Annotated[Optional[int], typer.Option("--actors", min=1, help="feature actors (default: one per CPU)")] = None,
    address: Address = None,
) -> None:
    """Copy a FairFace-layout folder with the backbone trunk's features of each image appended to
    its dlib embedding (fusion, facelab/fusion.py); train the fairface task on the copy."""
    from facelab import config
    from facelab.cluster import connect
    from facelab.fusion import fuse_backbone_features
    from facelab.store import ModelStore

    connect(address)
    emit(fuse_backbone_features(data, out, ModelStore(config.store_uri(store)), backbone,
                                data_root or config.data_root(), actors=actors))


@app.callback()
def _group() -> None:
    """Make data in the challenge layouts."""


if __name__ == "__main__":
    app()
