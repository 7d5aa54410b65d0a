"""Every challenge layout in FORMATS.md, keyed by the task that uses it.

Formats are imported lazily so `facelab --help` stays fast.
"""

from __future__ import annotations

import importlib

from facelab.errors import FacelabError
from facelab.formats.base import Format, Read, read_table, validated, write_bad_rows

_FORMATS = {
    "sentiment": "facelab.formats.sentiment:SentimentFormat",
    "age-bins": "facelab.formats.age_bins:AgeBinsFormat",
    "mask": "facelab.formats.mask:MaskFormat",
    "crowd": "facelab.formats.crowd:CrowdFormat",
    "deblur": "facelab.formats.deblur:DeblurFormat",
    "occlusion": "facelab.formats.occlusion:OcclusionFormat",
    "tracks": "facelab.formats.tracks:TracksFormat",
    "fairface": "facelab.formats.fairface:FairFaceFormat",
    "detect": "facelab.formats.detect:DetectFormat",
    "emotion": "facelab.formats.fer:FerFormat",
    "synth": "facelab.formats.synth:SynthFormat",
    "age-gender": "facelab.formats.utkface:UTKFaceFormat",
    "verify": "facelab.formats.verify:VerifyFormat",
    "backbone": "facelab.formats.backbone:BackboneFormat",
}

FORMAT_NAMES = tuple(_FORMATS)


def get_format(task: str) -> Format:
    """The layout of `task`'s challenge data."""
    if task not in _FORMATS:
        raise FacelabError(f"no data format for task '{task}'; known: {', '.join(_FORMATS)}")
    module, cls = _FORMATS[task].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["FORMAT_NAMES", "Format", "Read", "get_format", "read_table", "validated", "write_bad_rows"]
