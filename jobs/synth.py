"""`facelab synth` / `python -m jobs.synth`: faces from the promoted synth (DCGAN) model, measured on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab import config as paths
from facelab.tasks import get_task
from jobs.common import Store, command, emit, path_option


@command
def synth(
    out: Annotated[Path, path_option("--out", help="folder for the samples, samples.csv and grid.png")],
    n: Annotated[int, typer.Option("--n", min=1, help="how many faces")] = 64,
    seed: Annotated[int, typer.Option("--seed", min=0, help="faces of seeds SEED .. SEED+N-1 (same seed, same face)")] = 0,
    measure: Annotated[bool, typer.Option("--measure", help="also measure them: face rates (HOG, mediapipe) and "
                                                            "the gender balance by the promoted age-gender model")] = False,
    data: Annotated[Optional[Path], path_option("--data", help="UTKFace folder whose held-out faces and labels the "
                                                               "measure compares with (default: the run's training data)")] = None,
    store: Store = None,
    run: Annotated[Optional[str], typer.Option("--run", help="a synth run id instead of the promoted one")] = None,
) -> None:
    """Write N faces of the promoted synth model (PNGs, samples.csv, grid.png); --measure checks them."""
    import numpy as np

    from facelab.formats.synth import GRID_PNG, write_samples
    from facelab.store import ModelStore
    from facelab.synth_measure import measure as measure_samples, measure_png
    from facelab.tasks.synth import SynthPredictor

    uri = paths.store_uri(store)
    stored = ModelStore(uri).load("synth", run, check_config=get_task("synth").config)
    seeds = list(range(seed, seed + n))
    faces = SynthPredictor(str(stored.model_dir))({"seed": np.array(seeds), "n": np.ones(n, np.int64)})
    write_samples(list(faces["png"]), seeds, out)
    result = {"task": "synth", "run_id": stored.run_id, "samples": n, "out": str(out), "grid": str(out / GRID_PNG)}
    if measure:
        reference = data or (Path(stored.manifest["data"]) if stored.manifest.get("data") else None)
        measured = measure_samples(out, reference if reference and reference.is_dir() else None,
                                   gender=gender_head(uri))
        (out / "measure.json").write_text(json.dumps(measured, indent=2))
        result.update(measured, data=str(reference), plot=str(measure_png(measured, out / "measure.png")))
    emit(result)


def gender_head(store: str | None):
    """The promoted age-gender model's gender head (a `facelab.synth_measure.GenderHead`), or why
    the gender measure is pending when the store has none."""
    from facelab.errors import FacelabError
    from facelab.store import ModelStore
    from facelab.synth_measure import GenderHead

    try:
        run = ModelStore(paths.store_uri(store)).load("age-gender", check_config=get_task("age-gender").config)
    except FacelabError as exc:
        return f"pending: no promoted age-gender model ({exc})"
    return GenderHead(run.run_id, get_task("age-gender").predictor_class(str(run.model_dir)))


if __name__ == "__main__":
    typer.run(synth)
