"""Batch submissions: `facelab submit` (the whole process, as a user runs it) against a plain
single-process loop over the same predictor class, one task of each family.

    python bench/batch_submit.py [--size tiny|small|large] [--families estimator,dlib,...]

Families: estimator (sentiment), torch (emotion), yolo (mask), dlib (crowd), mediapipe (detect).
Each task is trained once with a CI-sized config (what `facelab train --promote` runs, every task in
one process; not timed; kept in /tmp/facelab-bench-<uid>/ between runs), so both sides load the
same stored, promoted run.

- baseline: one Python process that loads the predictor class from the run's model folder, calls it
  on the test split's rows (as the format's reader parsed and validated them, saved once: reading the
  CSV and checking rows is in facelab's job seconds, not in the loop's) in batches of the job's
  size, one after another, and writes the submission with the format's writer. torch and YOLO use
  their intra-op threads there (every CPU of the process), so their baseline is not single-threaded.
- facelab: `facelab submit --task T --data D --out O --store S` with its embedded Ray given 2 CPUs,
  and again with 1 CPU ($FACELAB_NUM_CPUS) for the scaling from 1 to 2 CPUs.

Both submissions must match (strings exactly, numbers within 1e-3). Two ratios per family: the
whole process (Ray's start-up included, what a user waits for) and the job alone (rows per second
of the prediction stage: submit's own `seconds` against the baseline loop's).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (WORK, agree, arguments, case, cpus, interleave, main_guard, record, repeats_for,  # noqa: E402
                     run_process)

FACELAB = str(Path(sys.executable).with_name("facelab"))

# family -> task, synthetic data options per size, the CI-sized training config, goal (whole ratio)
FAMILIES = {
    "estimator": ("sentiment", {"tiny": {"n": 300}, "small": {"n": 6000}, "large": {"n": 20000}},
                  {"model": "svc", "cv_folds": 2, "ensemble_folds": 3}, 1.8),
    "torch": ("emotion", {"tiny": {"n": 60}, "small": {"n": 1500}, "large": {"n": 5000}},
              {"epochs": 1, "base": 8, "fc": 32, "batch_size": 32}, 1.0),
    "yolo": ("mask", {"tiny": {"n": 12}, "small": {"n": 150}, "large": {"n": 600}},
             {"model": "yolov8n", "imgsz": 64, "epochs": 1, "batch": 8, "plots": False}, 1.0),
    # tiles whole, small model: 101 ResNet passes a crowd (the default config, 101 detections and 202
    # passes, is bench/crowd_stages.py's)
    "dlib": ("crowd", {"tiny": {"n": 1}, "small": {"n": 2}, "large": {"n": 8}}, {"tiles": "whole", "model": "small"}, 1.8),
    "mediapipe": ("detect", {"tiny": {"n": 12}, "small": {"n": 150}, "large": {"n": 600}},
                  {"model": "mediapipe", "min_side": 320}, 1.8),
}


# --- the two sides' processes ---------------------------------------------------------------------

def prepare(families: list[str], size: str) -> None:
    """For each family: synthesize the data, train and promote a run, and save the test split's
    parsed rows (not timed). All in this one process and its one Ray (a `facelab train` process per
    task paid Ray's start-up and cold worker imports each time: 3 min on a cold cache, 2026-12-07)."""
    import shutil

    import yaml

    from facelab.cluster import connect
    from facelab.tasks import get_task
    from facelab.train import train

    connect(quiet=True)
    for family in families:
        task_name, synth, config, _ = FAMILIES[family]
        folder = family_folder(family, size)
        began = time.monotonic()
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        data = get_task(task_name).format.synthesize(folder / "data", seed=0, **synth[size])
        (folder / "config.yaml").write_text(yaml.safe_dump(config))  # what was trained, for a reader
        train(task_name, data, str(folder / "store"), config=config, promote=True)
        save_rows(task_name, folder)
        (folder / "ready").write_text("ok\n")
        print(f"{family}: prepared {task_name} in {time.monotonic() - began:.0f} s", flush=True)


def family_folder(family: str, size: str) -> Path:
    return WORK / f"batch_submit-{size}" / family


def save_rows(task_name: str, folder: Path) -> None:
    """The test split as the format's reader parses it, and the promoted run's model folder."""
    from facelab.store import ModelStore
    from facelab.tasks import get_task

    task = get_task(task_name)
    run = ModelStore(str(folder / "store")).load(task.name, check_config=task.config)
    rows = task.format.read(folder / "data", task.submit_split).dataset.to_pandas()
    rows.to_pickle(folder / "rows.pkl")
    (folder / "model_dir").write_text(str(run.model_dir))


def baseline(task_name: str, folder: Path, out: Path) -> None:
    """The plain loop: one predictor, batch after batch, then the format's submission writer."""
    import numpy as np
    import pandas as pd

    from facelab.tasks import get_task

    task = get_task(task_name)
    rows = pd.read_pickle(folder / "rows.pkl")
    predictor = task.predictor_class((folder / "model_dir").read_text())
    size = task.predict_batch_size or 256
    started = time.perf_counter()
    outputs = []
    for start in range(0, len(rows), size):
        chunk = rows.iloc[start:start + size]
        outputs.append(predictor({c: chunk[c].to_numpy() for c in chunk.columns}))
    columns = {}
    for key in outputs[0]:
        values = np.concatenate([np.asarray(o[key]) for o in outputs])
        columns[key] = list(values) if values.ndim > 1 else values
    predictions = pd.DataFrame(columns).sort_values("_row").reset_index(drop=True)
    seconds = time.perf_counter() - started
    task.format.write_submission(task.predictions_frame(predictions), out, data=folder / "data", complete=True)
    print(json.dumps({"rows": len(predictions), "seconds": seconds}))


# --- comparing the two submissions ---------------------------------------------------------------

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def submission_values(path: Path) -> tuple[list[str], list[float]]:
    """A submission (file or folder) as its text with every number taken out, and the numbers."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    texts, numbers = [], []
    for file in files:
        text = file.read_text()
        texts.append(NUMBER.sub("#", text))
        numbers += [float(n) for n in NUMBER.findall(text)]
    return texts, numbers


def compare(base_out: Path, facelab_out: Path, what: str) -> float:
    base_text, base_numbers = submission_values(base_out)
    fl_text, fl_numbers = submission_values(facelab_out)
    agree(base_text, fl_text, what=f"{what}: submission text")
    return agree(base_numbers, fl_numbers, tolerance=1e-3, what=f"{what}: submission numbers")


# --- the benchmark ----------------------------------------------------------------------------------

def submit_side(task_name: str, folder: Path, out: Path, num_cpus: int, seconds: list):
    def run():
        text = run_process([FACELAB, "submit", "--task", task_name, "--data", str(folder / "data"),
                            "--out", str(out), "--store", str(folder / "store")],
                           env={"FACELAB_NUM_CPUS": str(num_cpus), "RAY_AUTH_MODE": "disabled"}, cwd=folder)
        summary = json.loads(text[text.index("{"):])
        seconds.append(summary["seconds"])
        return summary["rows"]
    return run


def baseline_side(task_name: str, folder: Path, out: Path, seconds: list):
    def run():
        text = run_process([sys.executable, __file__, "--baseline", task_name, str(folder), str(out)])
        summary = json.loads(text.strip().splitlines()[-1])
        seconds.append(summary["seconds"])
        return summary["rows"]
    return run


def bench_family(family: str, args) -> tuple[list[dict], list[str]]:
    task_name, _, _, goal = FAMILIES[family]
    folder = family_folder(family, args.size)
    outs = {side: folder / f"out-{side}" / "submission" for side in ("baseline", "facelab1", "facelab2")}
    for out in outs.values():
        out.parent.mkdir(exist_ok=True)
    job = {side: [] for side in outs}
    sides = {"baseline": baseline_side(task_name, folder, outs["baseline"], job["baseline"]),
             "facelab-2cpu": submit_side(task_name, folder, outs["facelab2"], 2, job["facelab2"]),
             "facelab-1cpu": submit_side(task_name, folder, outs["facelab1"], 1, job["facelab1"])}
    one_cpu = sides.pop("facelab-1cpu")
    if cpus() < 2:
        sides["facelab-1cpu"] = one_cpu
        sides.pop("facelab-2cpu")
    timings, answers = interleave(sides, repeats_for(args))
    if "facelab-1cpu" not in sides and args.size != "tiny":  # the scaling figure: one 1-CPU run, after the rounds
        sides["facelab-1cpu"] = one_cpu
        timings["facelab-1cpu"] = interleave({"facelab-1cpu": one_cpu}, 1)[0]["facelab-1cpu"]
    rows = answers["baseline"]
    ran = {"baseline"} | {key for side, key in (("facelab-2cpu", "facelab2"), ("facelab-1cpu", "facelab1")) if side in sides}
    written = {s: next(p for p in outs[s].parent.iterdir() if not p.name.endswith(".bad_rows.csv")) for s in ran}
    worst = max(compare(written["baseline"], written[key], family)
                for side, key in (("facelab-2cpu", "facelab2"), ("facelab-1cpu", "facelab1")) if side in sides)
    top = "facelab-2cpu" if "facelab-2cpu" in sides else "facelab-1cpu"
    note = (f"torch/YOLO baseline uses intra-op threads on all {cpus()} CPUs" if family in ("torch", "yolo")
            else "baseline is one single-threaded process")
    whole = case(f"{family} ({task_name}): whole process", {"baseline": timings["baseline"], top: timings[top]},
                 rows, "rows", facelab=top, goal=goal, max_difference=worst, note=note)
    job_timings = {"baseline": job["baseline"], top: job["facelab2" if top == "facelab-2cpu" else "facelab1"]}
    in_job = case(f"{family} ({task_name}): prediction stage only", job_timings, rows, "rows", facelab=top, goal=goal,
                  note="submit's own job seconds (Ray start-up and imports excluded) against the loop's")
    startup = statistics.median(timings[top]) - statistics.median(job_timings[top])
    figures = [f"{family} ({task_name}): facelab spends {startup:.1f} s outside the job (start-up, reading, writing)"]
    if "facelab-1cpu" in sides and top != "facelab-1cpu":
        scaling = statistics.median(timings["facelab-1cpu"]) / statistics.median(timings[top])
        job_scaling = statistics.median(job["facelab1"]) / statistics.median(job_timings[top])
        whole["scaling_1_to_2_cpus"], in_job["scaling_1_to_2_cpus"] = round(scaling, 3), round(job_scaling, 3)
        figures[0] += (f"; facelab 1 -> {cpus()} CPUs scaling {scaling:.2f}x whole process, "
                       f"{job_scaling:.2f}x prediction stage")
    if goal and not whole["met"]:
        base_job = statistics.median(job["baseline"])
        base_whole = statistics.median(timings["baseline"])
        # the best a 2-CPU facelab can do: the job on every core, plus its fixed start-up
        best = base_whole / (base_job / cpus() + startup + (base_whole - base_job))
        limit = (f"{family}: goal {goal}x missed on the whole process: facelab pays {startup:.1f} s outside the job "
                 f"(Ray start-up, actors loading the model) against a {base_job:.1f} s loop; at {cpus()} CPUs x the "
                 f"loop's single-core rate the best whole-process ratio at this size is {best:.2f}x")
        whole["note"] += "; " + limit
        figures.append(limit)
        print(limit, flush=True)
    print(figures[0], flush=True)
    return [whole, in_job], figures


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("--baseline", "--prepare"):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if sys.argv[1] == "--prepare":
            prepare(sys.argv[2].split(","), sys.argv[3])
        else:
            baseline(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--families", default=None,
                        help=f"any of {', '.join(FAMILIES)} (default: all; estimator alone at --size tiny)")
    args = parser.parse_args()
    args.families = args.families or ("estimator" if args.size == "tiny" else ",".join(FAMILIES))
    os.environ["RAY_AUTH_MODE"] = "disabled"
    print(f"batch_submit: {cpus()} CPUs, size {args.size}", flush=True)
    cases, figures, run = [], [], args.families.split(",")
    unknown = sorted(set(run) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    todo = [f for f in run if not (family_folder(f, args.size) / "ready").is_file()]
    if todo:  # kept in WORK between runs
        print(f"preparing {', '.join(todo)} (synthetic data, a promoted run each; not timed)", flush=True)
        began = time.monotonic()
        print(run_process([sys.executable, __file__, "--prepare", ",".join(todo), args.size]), end="", flush=True)
        print(f"prepared in {time.monotonic() - began:.0f} s", flush=True)
    for family in run:
        found, lines = bench_family(family, args)
        cases += [{**row, "family": family} for row in found]
        figures += lines
        # recorded after every family (a long run that is stopped keeps what it measured); the families
        # not run this time keep their cases from the last run at this size
        kept_cases, kept_figures = earlier(run, args)
        record("batch_submit", {"cases": kept_cases + cases, "figures": kept_figures + figures, "cpus_used": cpus(),
                                "families": {f: FAMILIES[f][0] for f in FAMILIES}}, args)
    return 0


def earlier(run: list[str], args) -> tuple[list, list]:
    """The cases and figures of the families not in `run`, from bench/results/batch_submit.json at this size."""
    from harness import RESULTS

    path = RESULTS / "batch_submit.json"
    if args.no_record or not path.is_file():
        return [], []
    old = json.loads(path.read_text())
    if old.get("size") != args.size:
        return [], []
    return ([c for c in old.get("cases", []) if c.get("family") not in run],
            [f for f in old.get("figures", []) if f.split(" ")[0].rstrip(":") not in run])


if __name__ == "__main__":
    main_guard(main)
