"""Real crowds in the AI Blitz XIII face-recognition layout, from ORL and UTKFace photos.

Each crowd `target/<ImageID>.jpg` is a 2160x2160 10x10 grid of 216x216 tiles of 100 different
people: every ORL person (40 by default, `orl_people`), one photo each, and UTKFace faces as
distractors for the other tiles, in a random order. `missing/<ImageID>.jpg` is ANOTHER photo of one
ORL person of the grid (the grid holds one of their photos, the missing image a different one), so
the solver must recognise a person, not find a copy. `truth.csv` (`ImageID,target`) names that
person's tile k (row k // 10, column k % 10), as formats/crowd.py reads and scores it.
`sources.csv` (`ImageID,tile,source`; tile -1 is the missing image) says which photo went where,
relative to the data root, for checking the data; solvers never read it.

Tiles: every photo is made into a tile the same way, so neither colour nor sharpness nor borders tell
ORL from UTKFace: greyscale; a centred square crop (ORL's 92x112 portraits lose 10 rows above the
hair and 10 below the chin -- no letterbox bars, no stretching; UTKFace's 200x200 crops are square
already); resized (area) to 92x92, ORL's resolution, so the sharper UTKFace photos are no easier
to tell apart; then resized (bicubic) to 216x216. The missing image is one such tile too.
UTKFace has no identities: two of its photos could show one person, which is rare in the sample and
only ever makes a distractor harder, never the answer. Seeded: the same seed writes the same crowds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facelab.converters.verify import SOURCE as ORL
from facelab.converters.verify import orl_people as orl_photos
from facelab.errors import FacelabError
from facelab.formats.crowd import GRID, N_FACES, TILE
from facelab.formats.images import ID, random_ids, save_jpeg
from facelab.progress import progress

SOURCE_SIDE = 92  # ORL's width: every face passes through this resolution
UTK = "utkface/images"


def face_tile(path: Path) -> np.ndarray:
    """A photo as a TILE x TILE greyscale tile (uint8, 2-D): centred square, 92x92, then 216x216."""
    with Image.open(path) as im:
        grey = im.convert("L")
    width, height = grey.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = grey.crop((left, top, left + side, top + side))
    small = square.resize((SOURCE_SIDE, SOURCE_SIDE), Image.Resampling.BOX)
    return np.asarray(small.resize((TILE, TILE), Image.Resampling.BICUBIC))


def orl_people(data_root: Path) -> dict[str, list[str]]:
    """ORL person -> their photos (two or more), relative to the data root, in text order."""
    people = orl_photos(data_root)
    if not people:
        raise FacelabError(f"{Path(data_root) / ORL}: no ORL people with two or more photos (s*/N.pgm)")
    return {name: sorted(str(p.relative_to(data_root)) for p in people[name]) for name in sorted(people)}


def utk_faces(data_root: Path) -> list[str]:
    """The UTKFace photos, relative to the data root."""
    faces = sorted(f"{UTK}/{p.name}" for p in (Path(data_root) / UTK).glob("*.jpg"))
    if not faces:
        raise FacelabError(f"{Path(data_root) / UTK}: no UTKFace photos (*.jpg)")
    return faces


def plan_crowd(rng: np.random.Generator, people: dict[str, list[str]], distractors: list[str],
               n_orl: int) -> tuple[list[str], str, int]:
    """One crowd: its 100 photos in tile order, the missing photo, and the answer tile."""
    names = list(people)
    chosen = [names[i] for i in rng.choice(len(names), n_orl, replace=False)]
    truth = chosen[0]
    grid_photo, missing = (people[truth][i] for i in rng.choice(len(people[truth]), 2, replace=False))
    photos = [grid_photo] + [people[p][rng.integers(len(people[p]))] for p in chosen[1:]]
    photos += [distractors[i] for i in rng.choice(len(distractors), N_FACES - n_orl, replace=False)]
    order = rng.permutation(N_FACES)
    return [photos[i] for i in order], missing, int(np.flatnonzero(order == 0)[0])


def crowd_image(tiles: list[np.ndarray]) -> np.ndarray:
    """100 greyscale tiles as the 2160x2160 RGB crowd (tile k at row k // 10, column k % 10)."""
    grid = np.stack(tiles).reshape(GRID, GRID, TILE, TILE).transpose(0, 2, 1, 3).reshape(GRID * TILE, GRID * TILE)
    return np.repeat(grid[:, :, None], 3, axis=2)


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, orl_people_per_crowd: int | None = None,
            **_: object) -> dict:
    """Write `n` (default 200) crowds with their missing faces, truth.csv and sources.csv under `out`."""
    data_root, out = Path(data_root), Path(out)
    n = 200 if n is None else n
    people, distractors = orl_people(data_root), utk_faces(data_root)
    n_orl = min(orl_people_per_crowd or len(people), len(people), N_FACES)
    if len(distractors) < N_FACES - n_orl:
        raise FacelabError(f"{len(distractors)} UTKFace photos cannot fill {N_FACES - n_orl} tiles")
    rng = np.random.default_rng(seed)
    ids = random_ids(rng, n)
    cache: dict[str, np.ndarray] = {}

    def tile(photo: str) -> np.ndarray:
        if photo not in cache:
            cache[photo] = face_tile(data_root / photo)
        return cache[photo]

    truth, sources = [], []
    for index, image_id in enumerate(progress(ids, "crowds", n)):
        # each crowd from its own stream: the first k crowds are the same whatever n is
        photos, missing, answer = plan_crowd(np.random.default_rng([seed, index]), people, distractors, n_orl)
        save_jpeg(crowd_image([tile(p) for p in photos]), out / "target" / f"{image_id}.jpg")
        save_jpeg(np.repeat(tile(missing)[:, :, None], 3, axis=2), out / "missing" / f"{image_id}.jpg")
        truth.append((image_id, answer))
        sources += [(image_id, -1, missing)] + [(image_id, k, p) for k, p in enumerate(photos)]
    pd.DataFrame(truth, columns=[ID, "target"]).to_csv(out / "truth.csv", index=False)
    pd.DataFrame(sources, columns=[ID, "tile", "source"]).to_csv(out / "sources.csv", index=False)
    return {"task": "crowd", "out": str(out), "crowds": n, "orl_people_per_crowd": n_orl,
            "utkface_tiles_per_crowd": N_FACES - n_orl, "truth": str(out / "truth.csv"), "seed": seed}
