"""`make bench`: every benchmark under bench/ at its default size, one after another (never two at
once: they would measure each other), then the table in bench/README.md. The target is 20 minutes
here; the last whole run took 19 min 17 s with batch_submit's models kept from the run before, about
21 min on a fresh machine (2026-12-07; README.md, Benchmarks).

    python bench/run_all.py                 # all of them
    python bench/run_all.py serve_load      # some of them
    python bench/run_all.py --size tiny     # the smoke run
"""

import argparse
import subprocess
import sys
import time

from harness import BENCH, write_table

# In the order they run; each script's own --help says what it measures.
SCRIPTS = ("batch_submit", "face_pipeline", "crowd_stages", "train_overhead", "sweeps", "serve_load")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", default=list(SCRIPTS), help=f"any of {', '.join(SCRIPTS)}")
    parser.add_argument("--size", default=None, help="passed to every script (default: each script's own)")
    args = parser.parse_args()
    unknown = sorted(set(args.scripts) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    failed = []
    for name in args.scripts:
        path = BENCH / f"{name}.py"
        if not path.exists():
            print(f"== {name}: not written yet (bench/{name}.py missing)", flush=True)
            failed.append(name)
            continue
        start = time.monotonic()
        print(f"== {name}", flush=True)
        argv = [sys.executable, str(path)] + (["--size", args.size] if args.size else [])
        code = subprocess.call(argv, cwd=BENCH.parent)
        print(f"== {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    write_table()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
