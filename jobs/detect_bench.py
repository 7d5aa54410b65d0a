"""`facelab detect-bench` / `python -m jobs.detect_bench`: every face detector on the real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cluster import connect
from facelab.faces import DETECTORS
from jobs.common import Address, DataRoot, command, path_option

COLUMNS = ("dataset", "detector", "min_side", "ap50", "precision", "recall", "best_f1", "recall_with_mask",
           "recall_without_mask", "detection_rate", "n_images", "ms_per_image", "cpu_ms_per_image")


@command
def detect_bench(
    out: Annotated[Path, path_option("--out", help="folder for bench.csv and pr_curves.png")] = Path("runs/detect-bench"),
    data_root: DataRoot = None,
    detectors: Annotated[str, typer.Option("--detectors", help="comma-separated detectors")] = ",".join(DETECTORS),
    min_sides: Annotated[str, typer.Option("--min-sides", help="comma-separated upsampling sizes for the VOC images")] = "160,640",
    limit: Annotated[int, typer.Option("--limit", min=1, help="images per face-crop data set (spread evenly)")] = 200,
    sets: Annotated[Optional[str], typer.Option("--sets", help="comma-separated data sets (default: all four)")] = None,
    address: Address = None,
) -> None:
    """Measure every detector: AP@0.5 on facemask_voc, detection rate on ORL, UTKFace and FER crops."""
    from facelab import config
    from facelab.detect_bench import best_voc, run_bench

    connect(address)
    table = run_bench(data_root or config.data_root(), out, detectors=detectors.split(","),
                      min_sides=[int(s) for s in min_sides.split(",")], limit=limit, sets=sets.split(",") if sets else None)
    shown = table[[c for c in COLUMNS if c in table]]
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    typer.echo(f"\nbest on the VOC data (AP): {best_voc(table)}\nwritten: {out / 'bench.csv'}, {out / 'pr_curves.png'}")


if __name__ == "__main__":
    typer.run(detect_bench)
