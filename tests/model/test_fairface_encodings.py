"""scripts/fairface_encodings.py: the encoding variants it compares, and its evaluation table."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.errors import FacelabError
from facelab.faces import FaceEncoder

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fairface_encodings.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("fairface_encodings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encoder_padding_is_checked():
    with pytest.raises(FacelabError, match="padding 3"):
        FaceEncoder(padding=3)


def test_variants_of_a_real_face(script, data_root):
    labels = pd.read_csv(data_root / "utkface" / "labels.csv")
    image = np.asarray(Image.open(data_root / "utkface" / labels["file"][0]).convert("RGB"))
    codes = script.encode_variants(image)
    assert set(codes) == {"small", "large", "large_mirror", "large_pad1"}
    assert all(v.shape == (128,) for v in codes.values())
    # the mirrored face is the same person (dlib's threshold 0.6); a wrongly mirrored box would not be
    assert 0 < np.linalg.norm(codes["large"] - codes["large_mirror"]) < 0.6
    # a wider chip is a different input to the encoder (it was trained at 0.25): far from the plain code
    assert np.linalg.norm(codes["large"] - codes["large_pad1"]) > 0.1
    assert script.encode_variants(np.full((200, 200, 3), 128, np.uint8)) is None


def test_evaluate_separates_only_what_the_codes_carry(script):
    rng = np.random.default_rng(0)
    n = 400
    gender, age = rng.integers(0, 2, n), rng.integers(0, 80, n)
    codes = {k: rng.normal(size=(n, 128)).astype(np.float32) for k in ("small", "large", "large_mirror", "large_pad1")}
    codes["large_pad1"][:, 0] += 4 * gender  # only the padded encoding carries gender
    table = script.evaluate(codes, gender, age, seed=0).set_index(["features", "model"])
    assert table.loc[("large at padding 1.0 alone", "logistic"), "gender_accuracy"] > 0.85
    assert table.loc[("small + large (the task's embedding)", "logistic"), "gender_accuracy"] < 0.65
    assert (table["test"] == 120).all()
