"""Rank-1 identification of labelled faces through a real gallery file (closed set, 1:N)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.gallery.store import PARTS, Gallery


def rank1_accuracy(codes: dict[str, np.ndarray], people: list[str], enrolled: int, db_path: str | os.PathLike, *,
                   model: str = "mean", seed: int = 0) -> dict:
    """Closed-set 1:N identification: per person `enrolled` random faces go into a fresh gallery
    file, every other face is a probe searched against it; rank-1 (and rank-5) accuracy.
    `codes`: {"small","large": [n, 128]} of n faces, `people[i]` the person of face i."""
    rng = np.random.default_rng(seed)
    people_arr = np.asarray(people)
    enrol_rows, probe_rows = [], []
    for person in sorted(set(people)):
        rows = rng.permutation(np.flatnonzero(people_arr == person))
        if len(rows) <= enrolled:
            raise FacelabError(f"person '{person}' has {len(rows)} faces; {enrolled} enrolled leaves no probe")
        enrol_rows.append(rows[:enrolled])
        probe_rows.extend(rows[enrolled:])
    Path(db_path).unlink(missing_ok=True)
    with Gallery(db_path) as gallery:
        for rows in enrol_rows:
            gallery.enroll(people[rows[0]], people[rows[0]], {part: codes[part][rows] for part in PARTS})
        ranked = [[m["subject_id"] for m in gallery.search({p: codes[p][i] for p in PARTS}, k=5, model=model)]
                  for i in probe_rows]
    truth = people_arr[probe_rows]
    return {"enrolled": enrolled, "subjects": len(enrol_rows), "probes": len(probe_rows),
            "rank1": float(np.mean([r[0] == t for r, t in zip(ranked, truth)])),
            "rank5": float(np.mean([t in r for r, t in zip(ranked, truth)]))}


def identification_eval(files: list[str], people: list[str], settings, *, enrolled: tuple[int, ...] = (1, 3, 5),
                        repeats: int = 5, model: str = "mean", seed: int = 0, actors: int | None = None) -> dict:
    """Rank-1 identification of labelled face images through a real gallery file: the faces are
    encoded once (facelab.face_codes, cached), then for each enrolled count, `repeats` random
    enrolment draws. Returns mean and std of rank-1/rank-5 per count."""
    import tempfile

    from facelab.face_codes import encode_files

    codes = encode_files(files, settings, actors=actors)
    out = {"images": len(files), "no_face_images": int(codes.whole.sum()), "images_encoded": codes.encoded,
           "settings": settings.key, "model": model, "repeats": repeats, "enrolled": {}}
    with tempfile.TemporaryDirectory(prefix="facelab-gallery-eval-") as tmp:
        for count in enrolled:
            runs = [rank1_accuracy(codes.codes(), people, count, Path(tmp) / f"{count}-{r}.sqlite", model=model, seed=seed + r)
                    for r in range(repeats)]
            out["enrolled"][count] = {"subjects": runs[0]["subjects"], "probes": runs[0]["probes"],
                                      **{f"{m}_{f.__name__}": float(f([run[m] for run in runs]))
                                         for m in ("rank1", "rank5") for f in (np.mean, np.std)},
                                      "rank1_runs": [run["rank1"] for run in runs]}
    return out
