"""Every face detector measured on the real data: `facelab detect-bench`.

- `facemask_voc` (VOC boxes, masked and unmasked faces): AP at IoU 0.5, precision / recall / F1 of
  all boxes, the best F1 over thresholds, recall of masked and unmasked faces; per `min_side`
  (160 leaves the ~400x300 images as they are, larger values upsample them for small faces).
- face crops with one face each and no boxes (`orl_faces` 92x112 PGM, `utkface` 200x200,
  `fer2013` 48x48): the detection rate, the fraction of images where at least one face is found,
  with the detectors' defaults for crops (upsampled to 160 px, a 15% black border).

Every (data set, detector, option) is one Ray task on one CPU; time per image is wall-clock seconds
of the detector call (decoding excluded) and its CPU time, so a loaded machine shows in the gap.
Writes `bench.csv` and `pr_curves.png` into the output folder and returns the table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelab.errors import FacelabError

RATE_SETS = {"orl_faces": ".", "utkface": "images", "fer2013": "test"}
VOC_SET = "facemask_voc"
CROP_OPTIONS = {"min_side": 160, "pad": 0.15}


def _sample(paths: list[str], limit: int | None) -> list[str]:
    """`limit` paths spread evenly over the sorted list (every identity / emotion represented)."""
    if not limit or len(paths) <= limit:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]


def measure_rate(config: dict, paths: list[str]) -> dict:
    """Detection rate (images with at least one face), faces per image and time per image."""
    from facelab.tasks.detect import detect_paths

    faces, wall, cpu = detect_paths(config, paths)
    return {"n_images": len(paths), "detection_rate": float(np.mean([len(f) > 0 for f in faces])),
            "faces_per_image": float(np.mean([len(f) for f in faces])), "ms_per_image": wall, "cpu_ms_per_image": cpu}


def _images(folder: Path) -> list[str]:
    from facelab.embed import list_images

    return [str(folder / p) for p in list_images(folder)]


def ray_map(calls: dict) -> dict:
    """Run `{key: (function, args)}` as Ray tasks of one CPU each; `{key: result}`."""
    import ray

    remote = {fn: ray.remote(num_cpus=1)(fn) for fn, _ in calls.values()}
    refs = {key: remote[fn].remote(*args) for key, (fn, args) in calls.items()}
    return dict(zip(refs, ray.get(list(refs.values()))))


def run_bench(data_root: Path, out: Path, *, detectors: list[str], min_sides: list[int], limit: int | None = 200,
              sets: list[str] | None = None, run_all=ray_map) -> pd.DataFrame:
    """Measure `detectors` on the real data sets under `data_root`; write bench.csv and pr_curves.png.
    `run_all` runs the measurements (Ray tasks by default)."""
    from facelab import plots
    from facelab.formats.detect import voc_items
    from facelab.tasks.detect import evaluate

    data_root, out = Path(data_root), Path(out)
    sets = sets or [VOC_SET, *RATE_SETS]
    missing = [s for s in sets if not (data_root / s).is_dir()]
    if missing:
        raise FacelabError(f"{data_root}: data set(s) not found: {', '.join(missing)}")
    calls = {}
    if VOC_SET in sets:
        items = voc_items(data_root / VOC_SET)
        for name in detectors:
            for side in min_sides:
                calls[(VOC_SET, name, side)] = (evaluate, ({"model": name, "min_side": side, "pad": 0.0}, items))
    for dataset in (s for s in sets if s in RATE_SETS):
        paths = _sample(_images(data_root / dataset / RATE_SETS[dataset]), limit)
        for name in detectors:
            calls[(dataset, name, CROP_OPTIONS["min_side"])] = (measure_rate, ({"model": name, **CROP_OPTIONS}, paths))
    results = run_all(calls)
    out.mkdir(parents=True, exist_ok=True)
    curves = {f"{name} (min_side {side})": r for (dataset, name, side), r in results.items() if dataset == VOC_SET}
    if curves:
        plots.pr_curves_png(curves, out / "pr_curves.png", title=f"{VOC_SET}: faces at IoU 0.5")
    table = pd.DataFrame([{"dataset": d, "detector": n, "min_side": s, "pad": 0.0 if d == VOC_SET else CROP_OPTIONS["pad"],
                           **{k: v for k, v in r.items() if k != "curve"}} for (d, n, s), r in results.items()])
    table.to_csv(out / "bench.csv", index=False)
    return table


def best_voc(table: pd.DataFrame) -> dict:
    """The best detector config on the VOC data by AP (the task's default config)."""
    voc = table[table["dataset"] == VOC_SET]
    if voc.empty:
        return {}
    row = voc.loc[voc["ap50"].idxmax()]
    return {"model": row["detector"], "min_side": int(row["min_side"]), "pad": float(row["pad"]), "ap50": float(row["ap50"])}

