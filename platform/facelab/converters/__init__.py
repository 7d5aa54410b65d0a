"""Converters from the real data under the data root into each challenge layout.

`facelab data convert --task T --out DIR` calls `convert(data_root, out, **options)` of the module
registered for T. Each converter reads `../shared/data` (or FACELAB_DATA_ROOT) in place, writes only
under `out`, is seeded, and returns a dict describing what it wrote (counts, reasons for skipped files).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from facelab.errors import FacelabError, RealDataMissing

# task -> "module:function"; one module per converter.
_CONVERTERS: dict[str, str] = {
    "sentiment": "facelab.converters.sentiment:convert",
    "fairface": "facelab.converters.fairface:convert",
    "occlusion": "facelab.converters.occlusion:convert",
    "age-bins": "facelab.converters.age_bins:convert",
    "mask-voc": "facelab.converters.mask_voc:convert",
    "crowd": "facelab.converters.crowd:convert",
    "verify": "facelab.converters.verify:convert",
    "deblur": "facelab.converters.deblur:convert",
    "tracks": "facelab.converters.tracks:convert",
}


def converter_names() -> list[str]:
    return list(_CONVERTERS)


def convert(task: str, data_root: Path, out: Path, **options: Any) -> dict:
    if task not in _CONVERTERS:
        raise FacelabError(f"no real-data converter for task '{task}'; converters: {', '.join(_CONVERTERS) or 'none'}")
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise RealDataMissing(f"{data_root}: data root not found (set --data-root or FACELAB_DATA_ROOT)")
    module, fn = _CONVERTERS[task].split(":")
    return getattr(importlib.import_module(module), fn)(data_root, Path(out), **options)


__all__ = ["convert", "converter_names"]
