"""What every benchmark under bench/ shares: interleaved repeats, medians and spreads, the agreement
check, the results file and the generated table.

A benchmark measures facelab and the baseline a user would otherwise run *in the same run, on the
same data, interleaved* (baseline, facelab, baseline, facelab, ...), because this machine is shared
and noisy: absolute seconds do not compare across runs, ratios measured side by side do.

    sides = {"baseline": lambda: plain_loop(rows), "facelab": lambda: facelab_job(rows)}
    timings, answers = interleave(sides, repeats=3)
    agree(answers["baseline"], answers["facelab"], tolerance=1e-5, what="embeddings")
    record("batch_submit", {"cases": [case(...)]})

Results go to bench/results/<script>.json; `write_table()` regenerates bench/README.md from all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# what a script prepares once and keeps between runs (trained models, synthetic data): not timed
WORK = Path(os.environ.get("FACELAB_BENCH_WORK", f"/tmp/facelab-bench-{os.getuid()}"))
REPO = BENCH.parent
SIZES = ("tiny", "small", "large")


class Disagreement(AssertionError):
    """The two sides of a benchmark gave different answers: a fast wrong answer must not win."""


def arguments(description: str, sizes: tuple[str, ...] = SIZES, default: str = "small") -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own to the parser it gets back."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", choices=sizes, default=default,
                        help="tiny: a smoke run of seconds; small: what `make bench` runs; large: a longer run")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per side (default: 3; 1 for tiny)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/results alone")
    return parser


def repeats_for(args: argparse.Namespace) -> int:
    return args.repeats or (1 if args.size == "tiny" else 3)


def cpus() -> int:
    """The CPUs this process may use (its affinity), which is what both sides get."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def interleave(sides: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run each side `repeats` times in turn (a, b, a, b, ...); wall seconds per run and each side's
    last answer. The order of `sides` is the order within a round: put the baseline first."""
    timings: dict[str, list[float]] = {name: [] for name in sides}
    answers: dict[str, Any] = {}
    for round_ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            answers[name] = run()
            timings[name].append(time.perf_counter() - start)
            print(f"  round {round_ + 1}/{repeats} {name}: {timings[name][-1]:.2f} s", flush=True)
    return timings, answers


def run_process(argv: list[str], env: Optional[dict] = None, cwd: Optional[Path] = None) -> str:
    """Run a whole process as a user would (its start-up included); its stdout, or an error with its stderr tail."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def spread(seconds: list[float]) -> dict:
    """Median and range of one side's wall times."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "runs_s": [round(s, 3) for s in seconds]}


def case(name: str, timings: dict[str, list[float]], units: float, unit: str, baseline: str = "baseline",
         facelab: str = "facelab", goal: Optional[float] = None, **extra) -> dict:
    """One measured comparison: per-side spread and rate (`units` of work per run, e.g. rows), and the
    ratio of medians (baseline time / facelab time: above 1 means facelab is faster)."""
    sides = {side: {**spread(ts), f"{unit}_per_s": units / statistics.median(ts)} for side, ts in timings.items()}
    ratio = statistics.median(timings[baseline]) / statistics.median(timings[facelab])
    row = {"case": name, "units": units, "unit": unit, "sides": sides, "baseline_side": baseline,
           "facelab_side": facelab, "ratio": round(ratio, 3), "goal": goal,
           "met": None if goal is None else bool(ratio >= goal), **extra}
    goal_text = "" if goal is None else f" (goal >= {goal}: {'met' if row['met'] else 'MISSED'})"
    print(f"{name}: {facelab} {sides[facelab][f'{unit}_per_s']:.2f} {unit}/s, {baseline} "
          f"{sides[baseline][f'{unit}_per_s']:.2f} {unit}/s, ratio {ratio:.2f}x{goal_text}", flush=True)
    return row


def agree(expected, actual, tolerance: float = 0.0, what: str = "answers") -> float:
    """Both sides' answers match within `tolerance` (numbers) or exactly (anything else); the largest
    difference found. Raises Disagreement otherwise."""
    try:
        a, b = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    except (TypeError, ValueError):  # labels, paths, nested records: equal or not
        if list(expected) != list(actual):
            raise Disagreement(f"{what}: the two sides' answers differ") from None
        return 0.0
    if a.shape != b.shape:
        raise Disagreement(f"{what}: shapes differ, {a.shape} against {b.shape}")
    worst = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
    if not worst <= tolerance:
        raise Disagreement(f"{what}: largest difference {worst:g} > tolerance {tolerance:g}")
    return worst


def record(script: str, payload: dict, args: Optional[argparse.Namespace] = None) -> Path:
    """Write bench/results/<script>.json (with the machine and size) and regenerate bench/README.md."""
    out = RESULTS / f"{script}.json"
    payload = {"script": f"bench/{script}.py", "size": getattr(args, "size", None), "cpus": cpus(),
               "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
               # the machine's load when the script ended (1, 5, 15 min): above the CPU count, other work ran beside it
               "load_average": [round(x, 1) for x in os.getloadavg()], **payload}
    if args is not None and args.no_record:
        print(json.dumps(payload, indent=1, default=str))
        return out
    RESULTS.mkdir(exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(out)
    write_table()
    print(f"results: {out.relative_to(REPO)}")
    return out


def _cell(value) -> str:
    return "" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value))


def write_table() -> Path:
    """bench/README.md: the text above its marker kept, one table row per case of every results file."""
    readme = BENCH / "README.md"
    marker = "<!-- results: generated by bench/harness.py from bench/results/*.json; do not edit below -->"
    head = readme.read_text().split(marker)[0].rstrip() if readme.exists() else "# bench/"
    rows = ["| script | size | CPUs (load) | case | facelab | baseline | ratio | goal | notes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        for row in result.get("cases", []):
            sides, unit = row["sides"], row["unit"]
            names = list(sides)
            base = row.get("baseline_side", names[0])
            fl = row.get("facelab_side", names[-1])
            rate = lambda s: f"{sides[s][f'{unit}_per_s']:.3g} {unit}/s (median {sides[s]['median_s']:.3g} s)"
            goal = "" if row.get("goal") is None else f">= {row['goal']}x {'met' if row.get('met') else 'missed'}"
            cpus_load = f"{result.get('cpus')} ({(result.get('load_average') or ['?'])[0]})"
            rows.append(f"| {result['script']} | {result.get('size')} | {cpus_load} | {row['case']} | "
                        f"{rate(fl)} | {rate(base)} | **{row['ratio']:.2f}x** | {goal} | {_cell(row.get('note'))} |")
        for line in result.get("figures", []):
            rows.append(f"| {result['script']} | {result.get('size')} | {result.get('cpus')} | {line} | | | | | |")
    readme.write_text(f"{head}\n\n{marker}\n\n" + "\n".join(rows) + "\n")
    return readme


def main_guard(run: Callable[[], int]) -> None:
    """Exit with the benchmark's status; a Disagreement is exit 3 with its message."""
    try:
        sys.exit(run())
    except Disagreement as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        sys.exit(3)
