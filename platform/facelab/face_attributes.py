"""What the face-attribute models share (age-gender, the face backbone): UTKFace's age as a label
distribution over 0..100 and its expectation, the attribute heads' config keys, and the JSON
answer of an age, a gender and a race."""

from __future__ import annotations

import torch
from pydantic import Field

from facelab.answers import Answer
from facelab.formats.utkface import GENDERS, RACES
from facelab.task_config import ImagePredictorConfig

AGES = 101  # classes 0..100, as HexaFace


def expected_age(age_probabilities):
    return (age_probabilities * torch.arange(AGES, device=age_probabilities.device)).sum(1)


def age_distribution(age, sigma: float):
    """Gaussian label distributions over 0..100 around each (clipped) age."""
    grid = torch.arange(AGES, device=age.device, dtype=torch.float32)
    density = torch.exp(-((grid[None, :] - age.float().clamp(0, AGES - 1)[:, None]) ** 2) / (2 * sigma ** 2))
    return density / density.sum(1, keepdim=True)


class GenderAnswer(Answer):
    label: str
    probability: float = Field(description="of that label")


def attributes_answer(output: dict) -> dict:
    """Age, gender and race of one predictor output row (AgeGenderAnswer's fields)."""
    female = float(output["p_female"])
    return {
        "age": round(float(output["age"]), 1),
        "gender": {"label": GENDERS[int(output["gender"])],
                   "probability": round(female if int(output["gender"]) else 1 - female, 4)},
        "race": {"label": RACES[int(output["race"])],
                 "probabilities": {name: round(float(output[f"p_{name}"]), 4) for name in RACES}},
    }


class FaceAttributesConfig(ImagePredictorConfig):
    """A ResNet-18 with an age (label distribution), a gender and a race head (and the backbone's
    emotion head): the keys age-gender and the backbone share."""

    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    dropout: float = Field(0.2, ge=0, lt=1)
    """dropout before the heads"""
    age_sigma: float = Field(2.0, gt=0)
    """width in years of the Gaussian age distribution the age head is trained towards"""
    age_l1: float = Field(0.1, ge=0)
    """weight of the L1 error of the expected age in the loss"""
    gender_weight: float = Field(1.0, ge=0)
    """weight of the gender head's cross-entropy in the loss"""
    race_weight: float = Field(0.5, ge=0)
    """weight of the race head's cross-entropy in the loss"""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """label smoothing of the classification heads"""
    tta_flip: bool = True
