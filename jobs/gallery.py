"""`facelab gallery ...` / `python -m jobs.gallery ...`: the 1:N identification gallery (SQLite)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jobs.common import Address, DataRoot, command, emit

app = typer.Typer(help="The 1:N identification gallery.", no_args_is_help=True)


@app.command("eval")
@command
def evaluate(
    data_root: DataRoot = None,
    enrolled: Annotated[list[int], typer.Option("--enrolled", min=1, help="images enrolled per person (repeat the option)")] = [1, 3, 5],  # noqa: B006
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="random enrolment draws per count")] = 5,
    detector: Annotated[str, typer.Option("--detector", help="face detector (facelab.faces.DETECTORS)")] = "hog",
    model: Annotated[str, typer.Option("--model", help="distance: small, large or mean")] = "mean",
    jitters: Annotated[int, typer.Option("--jitters", min=0, help="dlib re-encodings of perturbed crops")] = 0,
    upsample: Annotated[float, typer.Option("--upsample", min=1.0, help="scale images by this before encoding")] = 1.0,
    people_count: Annotated[Optional[int], typer.Option("--people", min=2, help="a seeded subset of the people (default all 40)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    actors: Annotated[Optional[int], typer.Option("--actors", min=1, help="encoder actors (default: one per cluster CPU)")] = None,
    address: Address = None,
) -> None:
    """Rank-1 identification on ORL: per person N faces enrolled in a fresh SQLite gallery, the rest
    searched as probes (top-k over every stored code); mean and std over random enrolment draws."""
    import time

    import numpy as np

    from facelab import config
    from facelab.cluster import connect
    from facelab.converters.verify import orl_people
    from facelab.face_codes import CoderSettings
    from facelab.gallery.evaluate import identification_eval

    people = orl_people(config.data_root(data_root))
    if people_count:
        chosen = set(np.random.default_rng(seed).choice(sorted(people), min(people_count, len(people)), replace=False))
        people = {name: images for name, images in people.items() if name in chosen}
    files = [str(f) for images in people.values() for f in images]
    labels = [name for name, images in people.items() for _ in images]
    connect(address)
    started = time.perf_counter()
    result = identification_eval(files, labels, CoderSettings(detector, jitters, upsample), enrolled=tuple(enrolled),
                                 repeats=repeats, model=model, seed=seed, actors=actors)
    emit({"data": "orl_faces", **result, "seconds": round(time.perf_counter() - started, 1)})


@app.callback()
def _group() -> None:
    """The 1:N identification gallery."""


if __name__ == "__main__":
    app()
