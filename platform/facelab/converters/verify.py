"""ORL/AT&T faces -> the verify layout: LFW-style pairs in people-disjoint folds.

Protocol (documented choice): the 40 people are shuffled (seeded) into 10 folds of 4; each fold
holds every same-person pair of its people (4 x C(10, 2) = 180) and as many different-person pairs
drawn from its own people, so 3,600 balanced pairs in all and no person in two folds: a threshold
chosen on 9 folds is scored on people it never saw. `n` caps the same (and different) pairs per
fold; `people` takes a seeded subset of the people and `folds` changes the fold count (for small
test sets). The referenced images are copied under `out/images/<person>/<n>.pgm`, so the layout is
self-contained; `out` must lie outside the repository (the data is not redistributable).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.formats.verify import PAIRS, fold_pairs

SOURCE = "orl_faces"
_REPO = Path(__file__).resolve().parents[3]


def _natural(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem))


def orl_people(data_root: Path) -> dict[str, list[Path]]:
    """ORL's people (folder `s1`..`s40`) and their images, in natural order."""
    source = Path(data_root) / SOURCE
    if not source.is_dir():
        raise FacelabError(f"{source}: ORL faces not found under the data root")
    people = {d.name: sorted(d.glob("*.pgm"), key=_natural) for d in sorted(source.iterdir(), key=_natural) if d.is_dir()}
    return {name: files for name, files in people.items() if len(files) >= 2}


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, people: int | None = None,
            folds: int = 10, **_: object) -> dict:
    out = Path(out).resolve()
    if out == _REPO or _REPO in out.parents:
        raise FacelabError(f"{out}: write converted ORL data outside the repository (it is not redistributable)")
    everyone = orl_people(data_root)
    rng = np.random.default_rng(seed)
    if people is not None:
        everyone = {name: everyone[name] for name in sorted(rng.choice(list(everyone), people, replace=False), key=_natural_name)}
    relative = {name: [f"images/{name}/{f.name}" for f in files] for name, files in everyone.items()}
    try:
        pairs = fold_pairs(relative, folds, n, rng)
    except ValueError as exc:
        raise FacelabError(f"verify convert: {exc}") from None
    source = {f"images/{name}/{f.name}": f for name, files in everyone.items() for f in files}
    used = sorted(set(pairs["file_a"]) | set(pairs["file_b"]))
    for name in used:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source[name], out / name)
    pairs.to_csv(out / PAIRS, index=False)
    per_fold = pairs.groupby("fold")["same"].agg(["sum", "count"])
    return {"task": "verify", "out": str(out), "pairs": len(pairs), "folds": folds, "people": len(everyone),
            "images": len(used), "same_per_fold": per_fold["sum"].tolist(),
            "different_per_fold": (per_fold["count"] - per_fold["sum"]).tolist(),
            "protocol": "people-disjoint folds; balanced same/different pairs within each fold's people"}


def _natural_name(name: str) -> tuple:
    return _natural(Path(name))
