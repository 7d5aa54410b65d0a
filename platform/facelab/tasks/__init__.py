"""The task registry: jobs, tuning and serve look tasks up here by name."""

from __future__ import annotations

import importlib

from facelab.errors import FacelabError
from facelab.formats import FORMAT_NAMES
from facelab.tasks.base import Task

# Every task of the platform; the ones with a model are listed in _IMPLEMENTED.
# (HexaFace's age and gender are one task, "age-gender", listed by its format.)
ALL_TASKS = (*FORMAT_NAMES, "detect", "verify", "emotion", "synth", "mask-face")

_IMPLEMENTED = {
    "sentiment": "facelab.tasks.sentiment:SentimentTask",
    "detect": "facelab.tasks.detect:DetectTask",
    "crowd": "facelab.tasks.crowd:CrowdTask",
    "emotion": "facelab.tasks.emotion:EmotionTask",
    "synth": "facelab.tasks.synth:SynthTask",
    "occlusion": "facelab.tasks.occlusion:OcclusionTask",
    "age-gender": "facelab.tasks.age_gender:AgeGenderTask",
    "verify": "facelab.tasks.verify:VerifyTask",
    "mask": "facelab.tasks.mask:MaskTask",
    "mask-face": "facelab.tasks.mask_face:MaskFaceTask",
    "age-bins": "facelab.tasks.age_bins:AgeBinsTask",
    "deblur": "facelab.tasks.deblur:DeblurTask",
    "tracks": "facelab.tasks.tracks:TracksTask",
    "fairface": "facelab.tasks.fairface:FairFaceTask",
}


def task_names() -> list[str]:
    """Tasks that can be trained, tuned, served and submitted today."""
    return list(_IMPLEMENTED)


def format_of(name: str):
    """The data format of a task or of a format name (a second method reads its task's format)."""
    from facelab.formats import get_format

    return get_task(name).format if name in _IMPLEMENTED else get_format(name)


def get_task(name: str) -> Task:
    if name not in _IMPLEMENTED:
        if name in ALL_TASKS:
            raise FacelabError(f"task '{name}' has its data format but no model yet; "
                               f"trainable tasks: {', '.join(_IMPLEMENTED)}")
        raise FacelabError(f"unknown task '{name}'; tasks: {', '.join(ALL_TASKS)}")
    module, cls = _IMPLEMENTED[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["ALL_TASKS", "Task", "format_of", "get_task", "task_names"]
