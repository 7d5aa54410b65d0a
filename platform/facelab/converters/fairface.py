"""Real UTKFace faces in the FairFace layout (seed 004: age, gender and race from face embeddings).

Labels from UTKFace's `labels.csv` (file,age,gender,race): age in FairFace's nine bins (0-2, 3-9,
10-19, ..., 60-69, "more than 70" for 70 and over), gender 0/1 as Male/Female, race as UTKFace's
own five labels (White, Black, Asian, Indian, Others), declared in `labels.json`
(`{"race": [...]}`), the override formats/fairface.py reads: UTKFace has no Latino/Middle Eastern
classes and one "Asian" for FairFace's East and Southeast Asian, so its labels are kept, not mapped.

Splits: a seeded shuffle into `fairface_label_train.csv` (70%), `fairface_label_val.csv` (15%) and
`fairface_label_test.csv` (15%, file only) with `test_truth.csv` (its labels, what `facelab score
--task fairface --truth` takes); `split="utkface"` (`--split utkface`) keeps the age-gender task's
split instead, so the test faces are the age-gender task's and the backbone task never trained on
them (what a model that starts from the backbone needs). `service_test` is False (UTKFace has no such flag). `n` keeps a
seeded sample of n images before splitting. `file` is the image path relative to the data root
(`utkface/images/...`); the images are read in place, never copied.

Embeddings: facelab.embed (Ray Data actor pool) with dlib HOG (images upsampled to 240 px with a 15%
border), one face per image; `embeddings.parquet` holds `file, embedding` with the embedding the
256 values of dlib's small (5-point) then large (68-point) encoding; the per-face rows (boxes,
landmarks, both encodings, reasons) stay in `faces.parquet`. An image where no face is found is
left out of the label files and listed with its reason in `skipped.csv`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.embed import UTK_OPTIONS, embed_folder
from facelab.errors import FacelabError
from facelab.formats.fairface import AGE_BINS, FILES, GENDERS, LABELS_FILE, write_embeddings

UTK = "utkface"
RACES = ("White", "Black", "Asian", "Indian", "Others")
SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}


def age_bin(age: int) -> str:
    """FairFace's bin of an age in years."""
    edges = (3, 10, 20, 30, 40, 50, 60, 70)  # the lower bound of every bin after the first
    return AGE_BINS[int(np.searchsorted(edges, age, side="right"))]


def utk_labels(data_root: Path) -> pd.DataFrame:
    """UTKFace's labels.csv (`images/<name>`, age, gender, race) as FairFace labels: file (relative to
    the data root), age bin, gender, race."""
    path = Path(data_root) / UTK / "labels.csv"
    if not path.is_file():
        raise FacelabError(f"{path}: UTKFace labels not found")
    raw = pd.read_csv(path)
    bad = ~raw["gender"].isin([0, 1]) | ~raw["race"].isin(range(len(RACES))) | ~raw["age"].between(0, 130)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FacelabError(f"{path}: row {i + 2}: unexpected labels {raw.iloc[i].to_dict()}")
    return pd.DataFrame({"file": [f"{UTK}/{f}" for f in raw["file"]], "age": raw["age"].map(age_bin),
                         "gender": raw["gender"].map(dict(enumerate(GENDERS))),
                         "race": raw["race"].map(dict(enumerate(RACES))), "service_test": False})


def _split(labels: pd.DataFrame, *, seed: int, n: int | None, how: str = "shuffle") -> dict[str, pd.DataFrame]:
    """A seeded shuffle (of n rows when given) cut into train / val / test by SHARES; or with
    `how="utkface"` the age-gender task's own split of UTKFace (the same test faces, and none that
    the backbone task trained on), of n seeded rows when given."""
    order = np.random.default_rng(seed).permutation(len(labels))[: n or len(labels)]
    if how == "utkface":
        from facelab.formats.utkface import split_names

        names = split_names([f.removeprefix(f"{UTK}/") for f in labels["file"]])
        return {name: labels.iloc[np.sort(order[names[order] == name])].reset_index(drop=True) for name in SHARES}
    if how != "shuffle":
        raise FacelabError(f"fairface: unknown split '{how}' (shuffle or utkface)")
    cuts = np.cumsum([int(round(SHARES[s] * len(order))) for s in ("train", "val")])
    return {name: labels.iloc[np.sort(part)].reset_index(drop=True)
            for name, part in zip(SHARES, np.split(order, cuts))}


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, actors: int | None = None,
            split: str = "shuffle", **_: object) -> dict:
    """Write the FairFace layout from UTKFace under `data_root` into `out`; returns counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = _split(utk_labels(data_root), seed=seed, n=n, how=split)
    wanted = [f.removeprefix(f"{UTK}/") for part in parts.values() for f in part["file"]]
    summary = embed_folder(Path(data_root) / UTK, out / "faces.parquet", UTK_OPTIONS, actors=actors, files=wanted)
    faces = pd.read_parquet(out / "faces.parquet")
    faces = faces[faces["file"].isin(set(wanted))]
    found = faces[faces["face"] == 0]
    found_files = {f"{UTK}/{f}" for f in found["file"]}
    written = {}
    for name, part in parts.items():
        kept = part[part["file"].isin(found_files)]
        if name == "test":
            kept[["file"]].to_csv(out / FILES["test"], index=False)
            kept.to_csv(out / "test_truth.csv", index=False)
        else:
            kept.to_csv(out / FILES[name], index=False)
        written[name] = len(kept)
    _write_embeddings(found, out)
    faces[faces["face"] < 0].assign(file=lambda f: f"{UTK}/" + f["file"])[["file", "reason"]].to_csv(
        out / "skipped.csv", index=False)
    (out / LABELS_FILE).write_text(json.dumps({"race": list(RACES)}))
    return {"task": "fairface", "out": str(out), "rows": written, "faces": summary,
            "embedding": "dlib small 128 + dlib large 128"}


def _write_embeddings(found: pd.DataFrame, folder: Path) -> None:
    matrix = np.hstack([np.stack(found["encoding"].to_numpy()), np.stack(found["encoding_large"].to_numpy())])
    write_embeddings([f"{UTK}/{f}" for f in found["file"]], matrix, folder)
