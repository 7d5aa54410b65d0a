"""`facelab demo` (the README's main command) runs end to end and prints its table."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.timeout(3200)
def test_demo_runs_end_to_end(tmp_path):
    proc = subprocess.run([str(BIN / "facelab"), "demo", "--out", str(tmp_path / "demo"), "--samples", "3"],
                          capture_output=True, text=True, timeout=3000,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("task "):]
    for name in ("sentiment", "age-bins", "mask", "crowd", "deblur", "occlusion", "tracks", "fairface"):
        assert f"\n{name} " in table
    assert "FAILED" not in table, table
    for name in ("detect", "verify", "crowd"):  # the face pipeline's tasks run on real faces when present
        assert re.search(rf"\n{name} +(submission|skipped)", table), table
    assert "serve: good request" in table and "HTTP 200" in table
    assert re.search(r"serve: malformed request +HTTP 422", table)
    f1 = float(table.split("submission: f1_weighted, accuracy")[1].split()[0].rstrip(","))
    assert f1 > 0.7
    assert (tmp_path / "demo" / "submissions" / "sentiment" / "submission.csv").is_file()
