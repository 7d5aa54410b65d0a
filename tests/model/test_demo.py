"""`facelab demo` (the README's first command): readable progress on the terminal, Ray's own output
in a log file, binary answers summarised, and an honest exit code.

The end-to-end run covers one swept estimator task (sentiment, the Tune path) and one trained task
(detect) through data, fit, submit, score and Serve; every task's own pipeline has its own tests
(and tests/model/test_relative_paths.py runs each through the same commands), and the full
`make demo` is the README's command."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facelab.errors import FacelabError, RealDataMissing
from jobs import demo

BIN = Path(sys.executable).parent
TASKS = ("sentiment", "detect")
RAY_NOISE = ("streaming_executor", "Trial status", "Logical resource usage", "INFO ", "(pid=", "Running:")


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 60, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_binary_answers_are_summarised_never_printed():
    png = _png(256, 128)
    shown = demo.describe_answer(png, "image/png")
    assert re.fullmatch(r"PNG 256x128, [\d.]+ KB", shown), shown
    assert demo.describe_answer(png) == shown  # recognised by its bytes too
    assert demo.describe_answer(b"\x89PNG\r\n\x1a\ncut short", "image/png") == "image/png, 0.0 KB"
    assert demo.describe_answer(b'{"label": "happy",  "p": 0.9}', "application/json") == '{"label":"happy","p":0.9}'
    assert demo.describe_answer(bytes(range(256)), "application/octet-stream") == "application/octet-stream, 0.2 KB"
    assert len(demo.describe_answer(b'{"x": "' + b"y" * 500 + b'"}')) <= 70


def _stage(exc: Exception | None) -> tuple[demo.Outcome, str]:
    terminal, log = io.StringIO(), io.StringIO()
    outcome = demo.Outcome("sentiment")
    with demo.Progress(terminal, log).stage(outcome, "fit") as note:
        if exc is not None:
            raise exc
        note["text"] = "tune 2 trials: f1_weighted 0.900"
    return outcome, terminal.getvalue() + "\n" + log.getvalue()


def test_a_failed_sweep_fails_the_task_and_only_absent_real_data_skips_it():
    ok, shown = _stage(None)
    assert ok.status == "ok" and re.search(r"sentiment +fit +[\d.]+ s  tune 2 trials", shown)
    failed, shown = _stage(FacelabError("every trial of the sweep failed (runs/x); the first: FileNotFoundError"))
    assert failed.status == "FAILED" and failed.cells["fit"] == "FAILED"
    assert "FAILED: FacelabError: every trial of the sweep failed" in shown and "Traceback" in shown  # the log has it
    crashed, _ = _stage(FileNotFoundError("rel_detect/val/images/synth000.png"))
    assert crashed.status == "FAILED"
    skipped, shown = _stage(RealDataMissing("/data: data root not found"))
    assert skipped.status == "skipped" and "skipped: /data: data root not found" in shown
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C ends the demo (with its table), not just the stage
        _stage(KeyboardInterrupt())


def test_the_table_has_a_row_per_task():
    rows = [demo.Outcome("sentiment", cells={"fit": "tune 2 trials", "score": "f1 0.9", "serve": "200"}, seconds=41),
            demo.Outcome("detect", status="FAILED", cells={"fit": "FAILED"}, seconds=3)]
    lines = demo.table(rows).splitlines()
    assert lines[0].split() == ["task", "status", "fit", "score", "serve", "seconds"]
    assert lines[1].startswith("sentiment  ok") and lines[1].endswith("41")
    assert lines[2].startswith("detect     FAILED")


def test_tune_output_keeps_stdout_for_the_result(tmp_path):
    """What `facelab tune` does around its sweep: everything printed (by Python or straight to the
    file descriptor, as Ray and Tune do) goes to stderr; stdout carries only the JSON."""
    script = ("import os, sys\nfrom jobs.common import emit, redirected_output\n"
              "with redirected_output(sys.stderr) as stdout:\n"
              "    print('Trial status: 1 RUNNING')\n    os.write(1, b'(pid=1) worker log\\n')\n"
              "    emit({'run_id': 'r1'}, stdout)\n"
              "print('after')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{\n  "run_id": "r1"\n}\nafter\n'
    assert "Trial status: 1 RUNNING" in proc.stderr and "(pid=1) worker log" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_end_to_end_quietly(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([str(BIN / "facelab"), "demo", "--out", str(out), "--samples", "2", "--tasks", ",".join(TASKS)],
                          capture_output=True, text=True, timeout=840,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    terminal = proc.stdout + proc.stderr
    for noise in RAY_NOISE:  # Ray's and Tune's own output went to the log file
        assert noise not in terminal, terminal
    log = out / "demo.log"
    assert str(log) in terminal and "Trial status" in log.read_text()
    for name in TASKS:  # one line per task and stage
        for stage in ("data", "fit", "submit", "score", "serve"):
            assert re.search(rf"\] {name} +{stage} +[\d.]+ s  \S", terminal), (name, stage, terminal)
    table = proc.stdout[proc.stdout.index("\ntask "):]
    assert re.search(r"\nsentiment +ok +tune 2 trials: f1_weighted 0\.\d+ +f1_weighted (0\.\d+)", table), table
    assert float(re.search(r"\nsentiment +ok +tune .* f1_weighted (0\.\d+),", table).group(1)) > 0.7
    assert re.search(r"\ndetect +ok +train: ap50 ", table), table
    assert table.count("malformed 422") == 2 and "FAILED" not in table
    assert (out / "submissions" / "sentiment" / "submission.csv").is_file()
