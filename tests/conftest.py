"""Shared fixtures: one local Ray for the session, a data root, temp stores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# Keep the Serve gallery of every test session out of the home folder.
os.environ.setdefault("FACELAB_GALLERY", os.path.join(tempfile.mkdtemp(prefix="facelab-gallery-"), "gallery.sqlite"))
# Face codes cached by facelab.face_codes: per test session, set before Ray starts so its workers see it too.
os.environ.setdefault("FACELAB_CACHE", tempfile.mkdtemp(prefix="facelab-cache-"))

REPO = Path(__file__).resolve().parents[1]

# `make test-fast` runs `-m "not slow"`. A test is slow when it trains, tunes or serves a model or
# starts another Ray: every test that uses one of these fixtures (each trains, tunes, deploys or
# starts a cluster once per module or session), and the tests named in SLOW_TESTS, which do it in
# their own body. Everything else (hand-checked units, formats, declarations) stays fast.
SLOW_FIXTURES = {
    "task_fit", "trained", "tuned_sentiment", "submitted", "resumed_sweep", "killed_run", "fitted",
    "service", "two_node_cluster", "node_loss_cluster", "portal",
}
SLOW_TESTS = {
    "test_fit_predict_and_serve",  # test_task_contract: a tiny fit of every task
    "test_train_tune_submit_score_with_relative_paths",  # test_relative_paths: the CLI verbs of every task
    "test_fit_submit_score_on_a_tiny_real_voc",  # test_detect
    "test_a_tiny_fit_tries_no_network",  # test_yolo_offline: one YOLO epoch
    "test_tiny_runs_without_ray",  # test_gpu_runs_script: two subprocess fits
    "test_demo_runs_end_to_end_quietly",  # a `facelab demo` subprocess with its own Ray
    "test_ray_job_submit_trains_and_stores_a_run",  # a two-node `ray start` cluster
    # real-data conversions and jobs that encode hundreds of faces with dlib (a minute or more each)
    "test_orl_conversion_reads_back_with_identity_signal",  # tests/data/test_tracks_convert.py
    "test_sentiment_from_fer", "test_fairface_from_utkface",  # tests/data/test_real_converters.py
    "test_gallery_eval_job",  # tests/code/test_gallery.py
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or getattr(item, "originalname", "") in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def ray_local():
    """An embedded local Ray shared by the whole test session."""
    import ray

    from facelab.cluster import connect

    connect(None, quiet=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data (../shared/data or FACELAB_DATA_ROOT); tests skip when it is absent."""
    from facelab.config import data_root as root

    path = root()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set FACELAB_DATA_ROOT)")
    return path


@pytest.fixture
def store_uri(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def facelab_cli():
    """Run a `facelab` command in-process; its stdout must be exactly one JSON object (what `| jq`
    reads), which comes back parsed."""
    import json

    from typer.testing import CliRunner

    from jobs.cli import app

    def invoke(*args: str) -> dict:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, f"facelab {' '.join(args)} exited {result.exit_code}:\n{result.output[-3000:]}"
        return json.loads(result.stdout)

    return invoke
