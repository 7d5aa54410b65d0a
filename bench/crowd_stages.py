"""Per-stage cost of the crowd task (find the missing face in its 100-face crowd), before and after.

    python bench/crowd_stages.py [--size tiny|small|large]

One process, no Ray: the cost of one crowd in the predictor, stage by stage, with the default config
(`tiles: detect`, `model: mean`, the seed's winner):
- tiling: decode the missing image and the 2160x2160 crowd, cut the 100 tiles, the missing face as a tile;
- detection: dlib's HOG on every face (101), the whole tile where it finds none;
- encoding: the 5- and 68-point landmark fits and dlib's ResNet, both models (202 encodings);
- matching: the mean of both models' distances from the missing face to the 100 tiles.

- baseline: the path as it was, a plain loop: the detector with its five landmarks per face (a
  68-point fit nothing used), then each face encoded on its own (`compute_face_descriptor` per face).
- facelab: `CrowdSolver` as it is now (facelab.tasks.crowd): boxes only from the detector, every
  face of the crowd through dlib's network in one batched call per model.

Both sides' 100 distances must agree within 1e-5 (the batched network gives the same numbers). The
smaller sizes encode a prefix of each crowd's tiles and scale the per-face stages to a whole crowd
(101 faces): detection and encoding are per face. Models are loaded before the timing starts (a
predictor actor loads them once).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import agree, arguments, case, cpus, interleave, main_guard, record, repeats_for  # noqa: E402

# size -> (crowds, tiles of each crowd encoded)
SIZES = {"tiny": (1, 7), "small": (1, 30), "large": (2, 100)}
STAGES = ("tiling", "detection", "encoding", "matching")
PER_FACE = ("detection", "encoding")  # scaled to 101 faces when a prefix of the tiles is measured


def before(missing_path: str, target_path: str, k: int) -> tuple[dict, object]:
    """The earlier path, a plain loop: (seconds per stage, the distances)."""
    import dlib
    import numpy as np

    from facelab.faces import distances, get_detector
    from facelab.faces.encode import POINTS, _resnet
    from facelab.faces.landmarks import dlib_shape
    from facelab.formats.crowd import tiles
    from facelab.formats.images import load_rgb
    from facelab.tasks.crowd import as_tile

    seconds = {}
    t = time.perf_counter()
    faces = [as_tile(load_rgb(missing_path)), *tiles(load_rgb(target_path))[:k]]
    faces = [np.ascontiguousarray(f, np.uint8) for f in faces]
    seconds["tiling"] = time.perf_counter() - t
    t = time.perf_counter()
    detector = get_detector("hog", fallback_whole=True)  # landmarks on: five points per face, unused here
    boxes = [detector(face)[0].box for face in faces]
    seconds["detection"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = {m: np.stack([np.asarray(_resnet().compute_face_descriptor(face, dlib_shape(face, box, POINTS[m]), 0, 0.25),
                                     np.float32) for face, box in zip(faces, boxes)]) for m in ("small", "large")}
    seconds["encoding"] = time.perf_counter() - t
    t = time.perf_counter()
    found = distances({m: c[:1] for m, c in codes.items()}, {m: c[1:] for m, c in codes.items()}, "mean")[0]
    seconds["matching"] = time.perf_counter() - t
    del dlib
    return seconds, found


def after(missing_path: str, target_path: str, k: int) -> tuple[dict, object]:
    """CrowdSolver as the predictor runs it, with its detector and encoder timed."""
    from facelab.faces import distances
    from facelab.formats.crowd import tiles
    from facelab.formats.images import load_rgb
    from facelab.tasks.crowd import CrowdSolver, as_tile

    solver = CrowdSolver(["encoding-detect-mean"])
    spent = {"detection": 0.0}
    detect = solver.detector

    def timed_detector(face):
        t = time.perf_counter()
        try:
            return detect(face)
        finally:
            spent["detection"] += time.perf_counter() - t

    solver.detector = timed_detector
    seconds = {}
    t = time.perf_counter()
    faces = [as_tile(load_rgb(missing_path)), *tiles(load_rgb(target_path))[:k]]
    seconds["tiling"] = time.perf_counter() - t
    t = time.perf_counter()
    codes = solver.encodings(faces)["detect"]
    seconds["detection"] = spent["detection"]
    seconds["encoding"] = time.perf_counter() - t - spent["detection"]
    t = time.perf_counter()
    found = distances({m: c[:1] for m, c in codes.items()}, {m: c[1:] for m, c in codes.items()}, "mean")[0]
    seconds["matching"] = time.perf_counter() - t
    return seconds, found


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    from facelab.formats import get_format

    n_crowds, k = SIZES[args.size]
    scale = 101 / (k + 1)  # per-face stages, scaled to a whole crowd
    with tempfile.TemporaryDirectory(prefix="facelab-bench-crowd-") as tmp:
        data = get_format("crowd").synthesize(Path(tmp) / "crowds", n=n_crowds, seed=0)
        crowds = [(str(p), str(data / "target" / p.name)) for p in sorted((data / "missing").glob("*.jpg"))]
        stages = {"baseline": [], "facelab": []}

        def side(run, name):
            def go():
                found, per_stage = [], {s: 0.0 for s in STAGES}
                for missing, target in crowds:
                    seconds, distances = run(missing, target, k)
                    found.append(distances)
                    for stage, value in seconds.items():
                        per_stage[stage] += value
                stages[name].append(per_stage)
                return found
            return go

        before(*crowds[0], 1), after(*crowds[0], 1)  # models loaded and imports done once, as in a predictor actor
        print(f"crowd_stages: {n_crowds} crowd(s), {k + 1} faces each (scaled x{scale:.2f} to 101), {cpus()} CPUs "
              "(one process: a predictor actor's view)", flush=True)
        timings, answers = interleave({"baseline": side(before, "baseline"), "facelab": side(after, "facelab")},
                                      repeats_for(args))
        worst = max(agree(b, f, tolerance=1e-5, what="crowd distances")
                    for b, f in zip(answers["baseline"], answers["facelab"]))

    def per_crowd(name: str, stage: str) -> float:
        value = statistics.median(run[stage] for run in stages[name]) / n_crowds
        return value * scale if stage in PER_FACE else value

    measured = {name: {stage: per_crowd(name, stage) for stage in STAGES} for name in stages}
    crowd_timings = {name: [sum(run[s] * (scale if s in PER_FACE else 1) for s in STAGES) / n_crowds
                            for run in stages[name]] for name in stages}
    row = case("crowd predictor: seconds per crowd (default config: tiles detect, model mean)", crowd_timings,
               1, "crowds", goal=None, max_difference=worst,
               stages_s={name: {s: round(v, 3) for s, v in measured[name].items()} for name in measured},
               note=f"{k + 1} faces per crowd measured, scaled to 101")
    figures = []
    for stage in STAGES:
        b, f = measured["baseline"][stage], measured["facelab"][stage]
        figures.append(f"crowd {stage}: {b:.2f} s per crowd before, {f:.2f} s after")
    total_b, total_f = (sum(measured[n].values()) for n in ("baseline", "facelab"))
    figures.append(f"crowd total: {total_b:.1f} s per crowd before, {total_f:.1f} s after, in one predictor; "
                   f"`facelab submit` now runs one predictor actor per cluster CPU ({cpus()} here, was "
                   f"os.cpu_count() // 2 = 1), so a 2-CPU machine solves ~{cpus() / max(total_f, 1e-9) * 60:.1f} crowds "
                   "per minute at most: encoding (202 ResNet passes) is the bound")
    for line in figures:
        print(line, flush=True)
    record("crowd_stages", {"cases": [row], "figures": figures, "faces_per_crowd_measured": k + 1,
                            "crowds": n_crowds, "seconds_per_crowd": measured}, args)
    return 0


if __name__ == "__main__":
    main_guard(main)
