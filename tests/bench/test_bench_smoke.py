"""Every benchmark under bench/ still runs: `python bench/<script>.py --size tiny --no-record` in a
subprocess (nothing is timed or compared against a goal here; a disagreement between the two sides,
exit 3, fails). Add a script's name to SCRIPTS; list it in NEEDS_DATA when it reads the data root."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # each starts processes (and most an embedded Ray)

# in `make bench` order
SCRIPTS = ["batch_submit", "face_pipeline", "crowd_stages", "train_overhead", "sweeps", "serve_load"]
# script -> the folder under the data root it reads
NEEDS_DATA = {"face_pipeline": "utkface"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_tiny(script, tmp_path):
    from facelab.config import data_root

    folder = NEEDS_DATA.get(script)
    if folder and not (data_root() / folder).is_dir():
        pytest.skip(f"bench/{script}.py needs {data_root() / folder}")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "FACELAB_BENCH_WORK": str(tmp_path / "work")}
    done = subprocess.run([sys.executable, str(REPO / "bench" / f"{script}.py"), "--size", "tiny", "--no-record"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"bench/{script}.py exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert '"cases"' in done.stdout  # the payload that record() prints with --no-record
