"""The face backbone's pretraining set: every labelled face the project has, in one data root.

A folder holding `utkface/` (UTKFace: age, gender, race) and/or `fer2013/` (FER-2013: emotion),
each in its own layout (formats/utkface.py, formats/fer.py), as in `../shared/data`. Splits are
the sources' own (UTKFace's seeded split, FER's Training / PublicTest / PrivateTest), so a
backbone never sees a face that a task it starts is tested on. Rows: `file` (relative to the
root), `path`, `source`, and `age`, `gender`, `race`, `emotion` as integer codes, -1 where the
source has no such label.

A submission is a CSV `file,age,gender,race,emotion` over the test rows (labels as names, blank
where the source has none); the score is each source's metrics on its own rows: age MAE, gender and
race accuracy on UTKFace, emotion accuracy on FER-2013, and their mean accuracy (age counted
right within 5 years).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelab.errors import BadRow, DataError
from facelab.formats.base import FILE, LAZY_STEP_CPUS, ROW, Format, Read, read_table
from facelab.formats.fer import EMOTIONS, FerFormat
from facelab.formats.utkface import GENDERS, RACES, UTKFaceFormat

SOURCES = {"utkface": UTKFaceFormat, "fer2013": FerFormat}
LABELS = ("age", "gender", "race", "emotion")
MISSING = -1
AGE_TOLERANCE = 5  # years: an age prediction this close counts as right in the mean accuracy


def sources(root: Path) -> list[str]:
    """The sources the root holds (a FacelabError-style DataError when it holds none)."""
    found = [name for name in SOURCES if (Path(root) / name).is_dir()]
    if not found:
        raise DataError(BadRow(str(root), 0, "-", f"holds none of {', '.join(n + '/' for n in SOURCES)}: "
                                                   "not a backbone data root"))
    return found


def _unified(batch: pd.DataFrame, source: str) -> pd.DataFrame:
    """A source's parsed rows in the backbone's columns (`_file` and `_row` still name the source's
    own file and line)."""
    n = len(batch)
    out = pd.DataFrame({FILE: batch[FILE], ROW: batch[ROW],
                        "file": [f"{source}/{f}" for f in batch["file"]], "path": batch["path"],
                        "source": [source] * n})
    for label in LABELS:
        out[label] = np.full(n, MISSING, np.int64)
    if source == "utkface":
        for label in ("age", "gender", "race"):
            out[label] = np.asarray(batch[label], np.int64)
    else:
        out["emotion"] = [EMOTIONS.index(e) for e in batch["label"]]
    return out


def listing_order(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with `file` and `_row` in listing order: by source, then by line."""
    source = [list(SOURCES).index(str(file).split("/")[0]) for file in rows["file"]]
    return rows.assign(_source=source).sort_values(["_source", ROW]).drop(columns="_source")


class BackboneFormat(Format):
    task = "backbone"
    synthetic_truth = "."  # the data root itself: its sources' own test labels

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        root = Path(root).resolve()
        parts, bad = [], []
        for source in SOURCES:
            if source not in sources(root):
                continue
            read = SOURCES[source]().read(root / source, split, skip_bad=skip_bad)
            bad += read.bad
            parts.append(read.dataset.map_batches(_unified, batch_format="pandas", num_cpus=LAZY_STEP_CPUS,
                                                  fn_kwargs={"source": source}))
        return Read(parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0], bad)

    def test_rows(self, root: Path) -> pd.DataFrame:
        """The test split's rows (file and labels), in listing order."""
        return listing_order(self.read(Path(root), "test").dataset.to_pandas())[["file", *LABELS]]

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        from facelab.atomic import replacing

        frame = pd.DataFrame({"file": predictions["file"], "age": np.round(np.asarray(predictions["age"], float), 1),
                              "gender": [GENDERS[int(g)] for g in predictions["gender"]],
                              "race": [RACES[int(r)] for r in predictions["race"]],
                              "emotion": [EMOTIONS[int(e)] for e in predictions["emotion"]]})
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out) as tmp:
            frame.to_csv(tmp, index=False)
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub = read_table(Path(submission), ("file", "age", "gender", "race", "emotion")).to_pandas()
        ref = self.test_rows(Path(truth))
        merged = ref.merge(sub[["file", "age", "gender", "race", "emotion"]], on="file", how="left",
                           suffixes=("", "_pred"))
        if merged["age_pred"].isna().any():
            missing = merged.loc[merged["age_pred"].isna(), "file"].iloc[0]
            raise DataError(BadRow(str(submission), 0, "file", f"no prediction for '{missing}'"))
        scores: dict[str, float] = {}
        faces = merged[merged["age"] >= 0]
        if len(faces):
            error = (faces["age_pred"].astype(float) - faces["age"]).abs()
            scores.update({"age_mae": float(error.mean()), f"age_within_{AGE_TOLERANCE}": float((error <= AGE_TOLERANCE).mean()),
                           "gender_accuracy": float((faces["gender_pred"] == faces["gender"].map(GENDERS.__getitem__)).mean()),
                           "race_accuracy": float((faces["race_pred"] == faces["race"].map(RACES.__getitem__)).mean())})
        expressions = merged[merged["emotion"] >= 0]
        if len(expressions):
            scores["emotion_accuracy"] = float((expressions["emotion_pred"]
                                                == expressions["emotion"].map(EMOTIONS.__getitem__)).mean())
        accuracies = [v for k, v in scores.items() if k.endswith("_accuracy") or k.startswith("age_within")]
        scores["mean_accuracy"] = float(np.mean(accuracies))
        return scores

    def synthesize(self, out: Path, *, n: int = 120, seed: int = 0) -> Path:
        """Both sources' synthetic sets under one root: n drawn UTKFace faces and n FER Training faces."""
        out = Path(out)
        UTKFaceFormat().synthesize(out / "utkface", n=n, seed=seed)
        FerFormat().synthesize(out / "fer2013", n=n, seed=seed)
        return out
