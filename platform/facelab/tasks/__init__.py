"""The task registry: jobs, tuning and serve look tasks up here by name.

Task modules are imported only when a task is looked up, so listing names (`facelab --help`,
`--task` completion) stays fast. A new task is one module here plus its search space.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from typing import TYPE_CHECKING

from facelab.errors import FacelabError

if TYPE_CHECKING:
    from facelab.tasks.base import Task

# name -> "module:class". (HexaFace's age and gender are one task, "age-gender".)
REGISTRY = {
    "sentiment": "facelab.tasks.sentiment:SentimentTask",
    "age-bins": "facelab.tasks.age_bins:AgeBinsTask",
    "mask": "facelab.tasks.mask:MaskTask",
    "mask-face": "facelab.tasks.mask_face:MaskFaceTask",
    "crowd": "facelab.tasks.crowd:CrowdTask",
    "deblur": "facelab.tasks.deblur:DeblurTask",
    "occlusion": "facelab.tasks.occlusion:OcclusionTask",
    "tracks": "facelab.tasks.tracks:TracksTask",
    "fairface": "facelab.tasks.fairface:FairFaceTask",
    "detect": "facelab.tasks.detect:DetectTask",
    "verify": "facelab.tasks.verify:VerifyTask",
    "emotion": "facelab.tasks.emotion:EmotionTask",
    "age-gender": "facelab.tasks.age_gender:AgeGenderTask",
    "synth": "facelab.tasks.synth:SynthTask",
    "backbone": "facelab.tasks.backbone:BackboneTask",
}


def task_names() -> list[str]:
    """Every registered task (no task module is imported)."""
    return list(REGISTRY)


@functools.cache
def task_class(name: str) -> type[Task]:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise FacelabError(f"unknown task '{name}'{hint}; tasks: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str) -> Task:
    return task_class(name)()


def __getattr__(name: str):
    if name == "Task":  # the contract's base class, imported on first use
        from facelab.tasks.base import Task

        return Task
    raise AttributeError(name)


__all__ = ["REGISTRY", "Task", "get_task", "task_class", "task_names"]
