"""Search spaces, one module per task: `space(trial)` (Optuna define-by-run) and `seed_points`."""

from __future__ import annotations

import importlib
from types import ModuleType

from facelab.errors import FacelabError


def for_task(task: str) -> ModuleType:
    try:
        return importlib.import_module(f"tuning.spaces.{task.replace('-', '_')}")
    except ModuleNotFoundError as exc:
        raise FacelabError(f"task '{task}' has no search space (tuning/spaces/{task.replace('-', '_')}.py)") from exc
