"""Search spaces, one module per task (named by the task's `space_module`).

A space module defines `space(trial)` (Optuna define-by-run; returns constants for the trial's
config) and may define:
- `extra_points`: configs to try besides the task's default config, which every sweep tries first;
- `asha`: ASHAScheduler arguments, for tasks whose trials report every epoch;
- `unused_defaults(suggested) -> set[str]`: default keys a trial's choices make meaningless.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from facelab.errors import FacelabError


def _no_unused_defaults(suggested: dict) -> set[str]:
    return set()


@dataclass(frozen=True)
class SearchSpace:
    module: str
    space: Callable
    extra_points: list[dict] = field(default_factory=list)
    asha: dict | None = None
    unused_defaults: Callable[[dict], set[str]] = _no_unused_defaults


def load(module: str) -> SearchSpace:
    """The search space in `module`, its optional parts filled with their defaults."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise FacelabError(f"no search space module '{module}' ({module.replace('.', '/')}.py)") from exc
    known = {"space", "extra_points", "asha", "unused_defaults"}
    parts = {name: vars(mod)[name] for name in known if name in vars(mod)}
    if "space" not in parts:
        raise FacelabError(f"search space module '{module}' defines no space(trial)")
    return SearchSpace(module=module, **parts)


def for_task(task) -> SearchSpace:
    """The search space of a task (a Task instance)."""
    return load(task.space_module)
