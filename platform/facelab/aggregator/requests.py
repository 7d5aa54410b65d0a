"""The Serve request models of the tracks task: `POST /tracks` (one track or a batch),
`/tracks/aggregate` (a track -> one descriptor) and `/tracks/match` (a track against references)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_FRAMES, MAX_DIM, MAX_REFERENCES = 256, 4096, 10_000


Vector = list[float]


def _check_frames(frames: list[Vector], field_name: str) -> None:
    if len({len(f) for f in frames}) != 1:
        raise ValueError(f"'{field_name}': every descriptor must have the same length")
    with np.errstate(over="ignore"):  # the aggregator's float32: 1e308 would become infinity there
        if not np.isfinite(np.asarray(frames, np.float32)).all():
            raise ValueError(f"'{field_name}': descriptors must not contain NaN, infinity or values beyond float32's range")


class TrackRequest(BaseModel):
    """One track (`frames`: its frame descriptors) or a batch (`tracks`)."""

    model_config = ConfigDict(extra="forbid")
    frames: list[list[float]] | None = Field(None, min_length=1, max_length=MAX_FRAMES)
    tracks: list[list[list[float]]] | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.frames is None) == (self.tracks is None):
            raise ValueError("give exactly one of 'frames' or 'tracks'")
        for track in [self.frames] if self.frames is not None else self.tracks:
            if not 1 <= len(track) <= MAX_FRAMES or not all(1 <= len(f) <= MAX_DIM for f in track):
                raise ValueError(f"a track has 1 to {MAX_FRAMES} descriptors of 1 to {MAX_DIM} values")
            _check_frames(track, "frames")
        return self


class AggregateRequest(BaseModel):
    """`POST /tracks/aggregate`: a track's frame descriptors -> one descriptor."""

    model_config = ConfigDict(extra="forbid")
    frames: list[list[float]] = Field(min_length=1, max_length=MAX_FRAMES)

    @model_validator(mode="after")
    def _finite(self):
        _check_frames(self.frames, "frames")
        return self


class MatchRequest(AggregateRequest):
    """`POST /tracks/match`: a track against reference descriptors -> distances."""

    references: list[list[float]] = Field(min_length=1, max_length=MAX_REFERENCES)
    reference_ids: list[str] | None = None

    @model_validator(mode="after")
    def _references(self):
        _check_frames(self.references, "references")
        if len(self.references[0]) != len(self.frames[0]):
            raise ValueError("references and frames must have the same dimension")
        if self.reference_ids is not None and len(self.reference_ids) != len(self.references):
            raise ValueError("give one reference id per reference")
        return self
