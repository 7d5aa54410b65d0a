"""The JSON answers of the Serve routes: one pydantic model per kind of prediction, shared by the
tasks that answer alike. A route answers one prediction, or `{"predictions": [...]}` for a batch
request (`one_or_batch`); every task's `Response` is validated against what it returns."""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict, Field, RootModel


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelProbabilities(Answer):
    """A class label and the probability of every class."""

    label: str
    probabilities: dict[str, float]


class Face(Answer):
    """A detected face in the image's pixels."""

    box: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2")
    score: float
    landmarks: list[list[float]] = Field(description="5 x (x, y): eye centres, nose tip, mouth corners")
    whole_image: bool = Field(description="no face was found and the whole image was taken as the face")


class MaskAnswer(Answer):
    masktype: str
    bbox: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the image's pixels")
    bbox_text: str = Field(description="the box as the challenge writes it")
    confidence: float


class DescriptorAnswer(Answer):
    """One face descriptor (e.g. a track's frames aggregated into one)."""

    descriptor: list[float]


@functools.cache
def one_or_batch(answer: type[BaseModel]) -> type[RootModel]:
    """The response model of a route that answers `answer` for one input and a batch of them."""
    batch = type(f"{answer.__name__}Batch", (Answer,), {"__annotations__": {"predictions": list[answer]}})
    return RootModel[answer | batch]
