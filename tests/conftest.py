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
