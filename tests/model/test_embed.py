"""`facelab embed`: a tiny folder with a face, a corrupt file and a face-less image -> rows and reasons."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facelab.embed import NO_FACE, WHOLE_IMAGE, EmbedOptions, embed_folder, list_images
from facelab.formats.cartoon import draw_face, noise_background, random_face


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A cartoon portrait (mediapipe finds it), a blank image, a corrupt .jpg, a .txt that is skipped."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    image = noise_background(rng, 200)
    draw_face(image, random_face(rng, beard=False, glasses=False), 100, 100, 45)
    (root / "people").mkdir()
    image.save(root / "people" / "face.png")
    Image.fromarray(np.full((90, 120), 128, np.uint8)).save(root / "blank.pgm")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_list_images_is_recursive_and_skips_other_files(folder):
    assert list_images(folder) == ["blank.pgm", "broken.jpg", "people/face.png"]


def test_embed_rows_and_reasons(folder, tmp_path, ray_local):
    out = tmp_path / "faces.parquet"
    summary = embed_folder(folder, out, EmbedOptions(detector="mediapipe", min_side=160, pad=0.0), actors=1)
    rows = {r["file"]: r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {"blank.pgm", "broken.jpg", "people/face.png"}
    face = rows["people/face.png"]
    assert face["reason"] == "" and face["face"] == 0 and len(face["encoding"]) == 128 and len(face["encoding_large"]) == 128
    assert len(face["landmarks"]) == 10 and len(face["landmarks68"]) == 136 and face["score"] > 0.3
    x0, y0, x1, y1 = face["box"]
    assert x0 < 100 < x1 and y0 < 100 < y1  # the face drawn at the centre
    assert 0.5 < np.linalg.norm(face["encoding"]) < 2.0  # a real dlib descriptor, not zeros or a blow-up
    assert rows["blank.pgm"]["reason"] == NO_FACE and rows["blank.pgm"]["encoding"] is None
    assert rows["broken.jpg"]["reason"].startswith("not a readable image") and rows["broken.jpg"]["width"] is None
    assert summary["images"] == 3 and summary["faces"] == 1
    # a second run reuses the file: nothing is recomputed, the rows stay
    again = embed_folder(folder, out, EmbedOptions(detector="mediapipe", min_side=160, pad=0.0), actors=1)
    assert again["ms_per_image"] is None and again["faces"] == 1


def test_fallback_whole_image(folder, tmp_path, ray_local):
    out = tmp_path / "whole.parquet"
    embed_folder(folder, out, EmbedOptions(detector="mediapipe", fallback_whole=True), files=["blank.pgm"], actors=1)
    (row,) = pq.read_table(out).to_pylist()
    assert row["reason"] == WHOLE_IMAGE and row["whole_image"] and row["box"] == [0, 0, 120, 90]
    assert len(row["encoding"]) == 128
