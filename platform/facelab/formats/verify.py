"""Face verification pairs (HexaFace, seed 002; LFW's pairs protocol on AT&T/ORL).

Layout: `pairs.csv` with columns `fold,file_a,file_b,same` beside the images it names, by path
relative to the folder (`images/s1/1.pgm`). `fold` is 1..K (the cross-validation folds: a
threshold is chosen on K-1 folds and scored on the last; people never span two folds), `same` is
1 for two images of one person and 0 otherwise, balanced in every fold.
Read columns (split `pairs`): `_file`, `_row`, `fold` (int), `file_a`, `file_b`, `path_a`,
`path_b` (absolute), `same` (int). A missing or undecodable image, a path leaving the folder, a
fold that is not a positive integer or a label other than 0/1 names its row and field.
Submission predictions: `fold`, `file_a`, `file_b`, `same` (bool or 0/1) and optionally
`distance`; written as that CSV. Scored by accuracy against the truth's `same` (pairs matched on
`file_a,file_b`), with ROC AUC when distances are given; `plots` draws the ROC of the distances.
"""

from __future__ import annotations

import itertools
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from facelab.errors import BadRow, DataError, FieldError
from facelab.formats import cartoon
from facelab.formats.base import FILE, ROW, Format, Read, read_table, validated
from facelab.formats.images import check_image, save_jpeg
from facelab.progress import progress

COLUMNS = ("fold", "file_a", "file_b", "same")
PAIRS = "pairs.csv"
KEY = ["file_a", "file_b"]


def fold_pairs(people: dict[str, list[str]], folds: int, per_fold: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """LFW-style pairs: people shuffled into `folds` disjoint groups; in each fold up to
    `per_fold` same-person pairs and as many different-person pairs, drawn without replacement
    from that fold's people (all same pairs the fold has when `per_fold` is None)."""
    names = list(people)
    rng.shuffle(names)
    if len(names) < 2 * folds:
        raise ValueError(f"{len(names)} people cannot fill {folds} folds of at least 2 people each")
    rows = []
    for fold, group in enumerate(np.array_split(np.array(names, dtype=object), folds), start=1):
        same = [pair for name in group for pair in itertools.combinations(people[name], 2)]
        different = [(a, b) for x, y in itertools.combinations(group, 2) for a in people[x] for b in people[y]]
        k = min(len(same), len(different), per_fold or len(same))
        for label, pool in ((1, same), (0, different)):
            for i in sorted(rng.choice(len(pool), k, replace=False)):
                a, b = pool[i] if rng.random() < 0.5 else pool[i][::-1]
                rows.append((fold, a, b, label))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _inside(root: Path, relative: str, field: str) -> str:
    """The absolute path of a file named relative to the folder; no absolute paths or `..`."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    if not relative or pure.is_absolute() or ".." in pure.parts:
        raise FieldError(field, f"'{relative}' is not a path inside the data folder")
    return str(root / pure)


def _check_row(record: dict) -> None:
    fold = record["fold"].strip()
    if not fold.isdigit() or int(fold) < 1:
        raise FieldError("fold", f"'{record['fold']}' is not a fold number (1, 2, ...)")
    if record["same"].strip() not in ("0", "1"):
        raise FieldError("same", f"'{record['same']}' is not 1 (same person) or 0 (different people)")
    for field in KEY:
        check_image(_inside(Path(record["_root"]), record[field], field), field)


def _parse_batch(batch: pd.DataFrame) -> pd.DataFrame:
    root = Path(batch["_root"].iloc[0])
    return pd.DataFrame({
        FILE: batch[FILE], ROW: batch[ROW], "fold": batch["fold"].str.strip().astype(int),
        "file_a": batch["file_a"], "file_b": batch["file_b"],
        "path_a": [str(root / f) for f in batch["file_a"]], "path_b": [str(root / f) for f in batch["file_b"]],
        "same": batch["same"].str.strip().astype(int),
    })


def _pairs_csv(path: Path, what: str, columns: list[str]) -> pd.DataFrame:
    """A pairs CSV as text with `_file`/`_row`; a duplicate pair names its line."""
    frame = read_table(path, columns).to_pandas()
    duplicated = frame.duplicated(KEY)
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataError(BadRow(str(path), int(row[ROW]), "file_a", f"{what} pair {row['file_a']}, {row['file_b']} appears twice"))
    return frame


def _labels(frame: pd.DataFrame, field: str = "same") -> np.ndarray:
    """A 0/1 (or true/false) column as bools; anything else names its row."""
    text = frame[field].str.strip().str.lower()
    ok = text.isin(["0", "1", "true", "false"])
    if not ok.all():
        row = frame[~ok].iloc[0]
        raise DataError(BadRow(row[FILE], int(row[ROW]), field, f"'{row[field]}' is not 1/0 (same/different)"))
    return text.isin(["1", "true"]).to_numpy()


def joined(submission: Path, truth: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Submission rows in the truth's pair order; a missing or unknown pair is a DataError."""
    sub = _pairs_csv(Path(submission), "submission", [*KEY, "same"])
    ref = _pairs_csv(Path(truth), "truth", [*KEY, "same"])
    keys = ref.set_index(KEY).index
    sub_keys = sub.set_index(KEY).index
    unknown = ~sub_keys.isin(keys)
    if unknown.any():
        row = sub[unknown].iloc[0]
        raise DataError(BadRow(str(submission), int(row[ROW]), "file_a", f"pair {row['file_a']}, {row['file_b']} is not in the truth"))
    missing = ~keys.isin(sub_keys)
    if missing.any():
        row = ref[missing].iloc[0]
        raise DataError(BadRow(str(submission), 0, "file_a", f"no row for pair {row['file_a']}, {row['file_b']} "
                                                             f"(truth row {row[ROW]}; {int(missing.sum())} missing)"))
    return sub.set_index(KEY).loc[keys].reset_index(), ref


def _distances(sub: pd.DataFrame) -> np.ndarray | None:
    """The submission's distances (None without a full column); `inf` (no face) ranks last."""
    if "distance" not in sub:
        return None
    values = pd.to_numeric(sub["distance"], errors="coerce").to_numpy(float)
    if np.isnan(values).any():
        return None
    finite = values[np.isfinite(values)]
    return np.where(np.isinf(values), (finite.max() + 1.0) if len(finite) else 1.0, values)


class VerifyFormat(Format):
    task = "verify"
    splits = ("pairs",)
    synthetic_truth = PAIRS

    def read(self, root: Path, split: str = "pairs", *, skip_bad: bool = False) -> Read:
        if split not in self.splits:
            raise ValueError(f"the verify layout has one split, 'pairs', not '{split}'")
        root = Path(root).resolve()
        frame = read_table(root / PAIRS, COLUMNS, malformed="mark").to_pandas()
        frame["_root"] = str(root)
        return validated(frame, _check_row, _parse_batch, skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        frame = pd.DataFrame({"fold": predictions["fold"], "file_a": predictions["file_a"], "file_b": predictions["file_b"],
                              "same": np.asarray(predictions["same"]).astype(bool).astype(int)})
        if "distance" in predictions:
            frame["distance"] = np.round(np.asarray(predictions["distance"], float), 6)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub, ref = joined(submission, truth)
        predicted, same = _labels(sub), _labels(ref)
        out = {"accuracy": float(np.mean(predicted == same)), "pairs": float(len(ref)),
               "true_accept_rate": float(predicted[same].mean()), "false_accept_rate": float(predicted[~same].mean())}
        distances = _distances(sub)
        if distances is not None:
            from sklearn.metrics import roc_auc_score

            out["roc_auc"] = float(roc_auc_score(same, -distances))
        return out

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        """The ROC of the submission's distances (none without a `distance` column)."""
        from facelab import plots

        sub, ref = joined(submission, truth)
        distances = _distances(sub)
        if distances is None:
            return []
        same = _labels(ref)
        Path(out).mkdir(parents=True, exist_ok=True)
        return [plots.roc_png({"pairs": (distances[same], distances[~same])}, Path(out) / "roc.png",
                              title=f"verify: ROC of {len(same)} pairs", marks=(1e-3, 1e-2, 1e-1))]

    def synthesize(self, out: Path, *, n: int = 12, seed: int = 0) -> Path:
        """n cartoon people (at least 4) with 4 portraits each, each a new expression, pose and
        lighting of one identity; pairs in min(10, n // 4) people-disjoint folds."""
        rng = np.random.default_rng(seed)
        out = Path(out)
        n = max(n, 4)
        people = {}
        for p in progress(range(n), "verify people", n):
            face, name = cartoon.random_face(rng), f"p{p + 1:02d}"
            people[name] = []
            for i in range(1, 5):
                changed = face.vary(smile=float(np.clip(face.smile + rng.normal(0, 0.4), -1, 1)))
                image, _ = cartoon.portrait(rng, changed, 128, scale=0.3, jitter=0.06)
                people[name].append(save_jpeg(image, out / "images" / name / f"{i}.jpg").relative_to(out).as_posix())
        fold_pairs(people, max(1, min(10, n // 4)), None, rng).to_csv(out / PAIRS, index=False)
        return out
