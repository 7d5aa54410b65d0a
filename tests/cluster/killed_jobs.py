"""Run `facelab` in a subprocess with a Ray of its own, and SIGKILL it whole: what the tests of
killed jobs (a sweep, a submission) share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FACELAB = str(Path(sys.executable).with_name("facelab"))


def kill_group(proc: subprocess.Popen, ray_tmp: Path) -> None:
    """SIGKILL the driver's process group (the driver and the Ray it started), then any process
    still holding that Ray's session folder (one that left the group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    for _ in range(20):
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(ray_tmp).encode() in cmdline:
                left.append(int(entry.name))
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def facelab(args: list[str], ray_tmp: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_tmp),
           "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.Popen([FACELAB, *args], cwd=REPO, env=env, start_new_session=True, text=True, **kwargs)


@pytest.fixture
def ray_tmp():
    """RAY_TMPDIR of the subprocesses' own Ray (short: it holds Unix sockets), removed afterwards."""
    import shutil

    path = Path(f"/tmp/fl-kill-{os.getpid()}")
    path.mkdir(exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)
