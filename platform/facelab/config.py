"""Where things live: the data root and the model store, overridable by flag or environment."""

from __future__ import annotations

import os
from pathlib import Path

# platform/facelab/config.py -> the repository's parent holds shared/data in a checkout
_REPO = Path(__file__).resolve().parents[2]


def absolute(path: str | os.PathLike) -> Path:
    """A local path made absolute against this process's working directory (`~` expanded). Library
    entry points resolve what they are given with it: Tune trials, Train workers, Ray Data tasks and
    Serve replicas do not share the caller's working directory, so no relative path may reach them."""
    return Path(path).expanduser().resolve()


def data_root(override: str | os.PathLike | None = None) -> Path:
    """Real data: --data-root, else $FACELAB_DATA_ROOT, else ../shared/data beside the repo."""
    if override:
        return Path(override)
    if os.environ.get("FACELAB_DATA_ROOT"):
        return Path(os.environ["FACELAB_DATA_ROOT"])
    return _REPO.parent / "shared" / "data"


def store_uri(override: str | None = None) -> str:
    """The model store: --store, else $FACELAB_STORE, else ~/.facelab/store (a local path or any
    pyarrow filesystem URI such as s3://bucket/facelab)."""
    if override:
        return override
    return os.environ.get("FACELAB_STORE") or str(Path.home() / ".facelab" / "store")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Derived files facelab can rebuild (converted training layouts, ultralytics' config):
    argument, else $FACELAB_CACHE, else ~/.cache/facelab. Never inside a user's data folder."""
    if override:
        return Path(override)
    return Path(os.environ.get("FACELAB_CACHE") or Path.home() / ".cache" / "facelab")


def gallery_path(override: str | os.PathLike | None = None) -> Path:
    """The identification gallery's SQLite file: argument, else $FACELAB_GALLERY, else ~/.facelab/gallery.sqlite."""
    if override:
        return Path(override)
    return Path(os.environ.get("FACELAB_GALLERY") or Path.home() / ".facelab" / "gallery.sqlite")
