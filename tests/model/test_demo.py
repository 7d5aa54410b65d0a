"""`facelab demo` (the README's main command) runs end to end and prints its table.

CI runs it on a cross-section of the registry, one task per kind of fit: a Tune sweep of classical
models (sentiment), a small Ray Train fit (tracks), a YOLO fit (age-bins) and the face pipeline on
real faces (verify); every task's own pipeline has its own tests, and the full `facelab demo` is
the README's command."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TASKS = ("sentiment", "tracks", "age-bins", "verify")


@pytest.mark.slow
@pytest.mark.timeout(1300)
def test_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run([str(BIN / "facelab"), "demo", "--out", str(tmp_path / "demo"), "--samples", "2",
                           "--tasks", ",".join(TASKS)],
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("task "):]
    for name in TASKS:
        assert f"\n{name} " in table
    assert "FAILED" not in table, table
    assert re.search(r"\nverify +(submission|skipped)", table), table  # real faces when present
    assert "serve: good request" in table and "HTTP 200" in table
    assert re.search(r"serve: malformed request +HTTP 422", table)
    f1 = float(table.split("submission: f1_weighted, accuracy")[1].split()[0].rstrip(","))
    assert f1 > 0.7
    assert (tmp_path / "demo" / "submissions" / "sentiment" / "submission.csv").is_file()
