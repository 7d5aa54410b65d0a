"""FER-2013 (seed 002, HexaFace section 3.5: facial emotion) as image folders with labels.csv.

Layout, read in place: `labels.csv` (`file,Usage,emotion_name,emotion`) over the images
`<folder>/<emotion_name>/<name>.jpg`, folder train | validation | test for Usage Training |
PublicTest | PrivateTest; 48x48 greyscale JPEGs; `emotion` is the index in the original
fer2013.csv order (EMOTIONS). Without labels.csv the folders alone are read (label = folder name).
Splits: train = Training, val = PublicTest (early stopping), test = PrivateTest (labelled; scored).
Read columns: `_file`, `_row`, `file` (as in labels.csv), `path` (absolute), `label` (emotion name).
A bad row names its field: a path outside the data folder, an unknown emotion, an index that
disagrees with the name, an image in another emotion's folder, an image that does not decode, or
a Usage that is none of the three (such a row is reported by every split, or it would vanish).
Submission predictions: a DataFrame with `file` and `label`; written as `file,emotion_name,emotion`.
Score: accuracy (the seed's metric), macro and weighted F1 and F1 per emotion, joined on `file`,
against a truth CSV: labels.csv (its PrivateTest rows) or any `file,emotion_name` CSV (all rows).
When the truth holds Training rows it also gives `accuracy_at_train_prior`: the per-emotion
recalls weighted by the Training class frequencies, i.e. the accuracy expected on a test set with
FER's natural class balance (HexaFace's test set) rather than this balanced PrivateTest sample.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats import cartoon
from facelab.formats.base import FILE, ROW, Format, Read, read_table, require_file, split_sizes, validated
from facelab.formats.images import check_image, first_bad
from facelab.progress import progress

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FOLDER = {"train": "train", "val": "validation", "test": "test"}
LABELS_CSV = "labels.csv"
COLUMNS = ("file", "Usage", "emotion_name", "emotion")
SIZE = 48


# --- reading --------------------------------------------------------------------------------

def _labelled_rows(root: Path, split: str) -> pd.DataFrame:
    """labels.csv rows of `split` (plus rows of no known Usage), as text with `_file`/`_row`."""
    frame = read_table(root / LABELS_CSV, COLUMNS, malformed="mark").to_pandas()
    return frame[(frame["Usage"] == USAGE[split]) | ~frame["Usage"].isin(list(USAGE.values()))]


def _folder_rows(root: Path, split: str) -> pd.DataFrame:
    """Without labels.csv: every `<folder>/<emotion>/*.jpg`, labelled by its folder."""
    folder = root / FOLDER[split]
    if not folder.is_dir():
        raise DataError(BadRow(str(root / LABELS_CSV), 0, "-", f"neither labels.csv nor the folder {folder} exists"))
    files = sorted(p.relative_to(root).as_posix() for p in folder.glob("*/*") if p.suffix.lower() in (".jpg", ".png"))
    names = [PurePosixPath(f).parent.name for f in files]
    return pd.DataFrame({
        "file": files, "Usage": USAGE[split], "emotion_name": names,
        "emotion": [str(EMOTIONS.index(n)) if n in EMOTIONS else "" for n in names],
        FILE: str(folder), ROW: np.arange(1, len(files) + 1)})


def _check_row(record: dict, root: Path) -> None:
    file = PurePosixPath(record["file"])
    if not record["file"] or file.is_absolute() or ".." in file.parts:
        raise FieldError("file", f"'{record['file']}' is not a path inside the data folder")
    if record["Usage"] not in USAGE.values():
        raise FieldError("Usage", f"'{record['Usage']}' is not one of {', '.join(USAGE.values())}")
    name = record["emotion_name"]
    if name not in EMOTIONS:
        raise FieldError("emotion_name", f"'{name}' is not one of {', '.join(EMOTIONS)}")
    if record["emotion"] != str(EMOTIONS.index(name)):
        raise FieldError("emotion", f"'{record['emotion']}' is not {name}'s index {EMOTIONS.index(name)}")
    folder = file.parent.name
    if folder in EMOTIONS and folder != name:
        raise FieldError("emotion_name", f"'{name}' but the image is in the folder of '{folder}'")
    check_image(root / file, "file")


def _parse_batch(batch: pd.DataFrame, root: Path) -> pd.DataFrame:
    return pd.DataFrame({FILE: batch[FILE], ROW: batch[ROW], "file": batch["file"],
                         "path": [str(root / f) for f in batch["file"]], "label": batch["emotion_name"]})


# --- scoring --------------------------------------------------------------------------------

def _truth_rows(truth: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """(truth file, its scored rows, its Training rows) from labels.csv or a folder holding it."""
    truth = Path(truth)
    path = require_file(truth / LABELS_CSV if truth.is_dir() else truth, "truth")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame[ROW] = np.arange(2, len(frame) + 2)
    for name in ("file", "emotion_name"):
        if name not in frame:
            raise DataError(BadRow(str(path), 1, name, f"missing column (found {list(frame.columns)})"))
    if "Usage" not in frame:
        return path, frame, frame.iloc[:0]
    return path, frame[frame["Usage"] == USAGE["test"]], frame[frame["Usage"] == USAGE["train"]]


def _joined(submission: Path, truth: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(submission rows in the truth's order, truth rows, Training rows of the truth)."""
    sub = pd.read_csv(require_file(submission, "submission"), dtype=str, keep_default_na=False)
    sub[ROW], sub[FILE] = np.arange(2, len(sub) + 2), str(submission)
    for name in ("file", "emotion_name"):
        if name not in sub:
            raise DataError(BadRow(str(submission), 1, name, f"missing column (found {list(sub.columns)})"))
    first_bad(sub, sub["file"].duplicated(), "file", lambda r: f"'{r['file']}' appears twice")
    first_bad(sub, ~sub["emotion_name"].isin(EMOTIONS), "emotion_name", lambda r: f"'{r['emotion_name']}' is not an emotion")
    path, ref, train = _truth_rows(truth)
    first_bad(sub, ~sub["file"].isin(ref["file"]), "file", lambda r: f"'{r['file']}' is not a scored image of {path}")
    missing = ~ref["file"].isin(sub["file"])
    if missing.any():
        row = ref[missing].iloc[0]
        raise DataError(BadRow(str(submission), 0, "file", f"no prediction for '{row['file']}' (truth row {row[ROW]}; "
                                                           f"{int(missing.sum())} missing)"))
    return sub.set_index("file").loc[list(ref["file"])].reset_index(), ref, train


def emotion_metrics(y_true, y_pred, train_labels=()) -> dict[str, float]:
    """Accuracy, macro/weighted F1, F1 per emotion, and (given Training labels) the accuracy at
    the Training class balance."""
    from sklearn.metrics import f1_score, recall_score

    y_true, y_pred = list(y_true), list(y_pred)
    out = {"accuracy": metrics.classification(y_true, y_pred)["accuracy"],
           "f1_macro": float(f1_score(y_true, y_pred, labels=list(EMOTIONS), average="macro", zero_division=0)),
           "f1_weighted": float(f1_score(y_true, y_pred, labels=list(EMOTIONS), average="weighted", zero_division=0))}
    per_class = f1_score(y_true, y_pred, labels=list(EMOTIONS), average=None, zero_division=0)
    out.update({f"f1_{e}": float(v) for e, v in zip(EMOTIONS, per_class)})
    if len(train_labels):
        prior = pd.Series(list(train_labels)).value_counts(normalize=True).reindex(EMOTIONS, fill_value=0.0)
        recall = recall_score(y_true, y_pred, labels=list(EMOTIONS), average=None, zero_division=0)
        out["accuracy_at_train_prior"] = float(np.dot(prior.to_numpy(), recall))
    out["n"] = float(len(y_true))
    return out


# --- synthetic data -------------------------------------------------------------------------

# Each emotion as a cartoon expression: mouth curve, brow slant (outer end up = a frown's V),
# eye size and mouth width; every face adds noise to these.
EXPRESSIONS = {
    "angry": dict(smile=-0.4, brow_tilt=0.25, eye_size=0.10, mouth_width=0.35),
    "disgust": dict(smile=-0.8, brow_tilt=0.12, eye_size=0.07, mouth_width=0.22),
    "fear": dict(smile=-0.3, brow_tilt=-0.20, eye_size=0.19, mouth_width=0.30),
    "happy": dict(smile=1.0, brow_tilt=0.0, eye_size=0.12, mouth_width=0.50),
    "sad": dict(smile=-0.9, brow_tilt=-0.25, eye_size=0.11, mouth_width=0.40),
    "surprise": dict(smile=0.1, brow_tilt=-0.08, eye_size=0.20, mouth_width=0.16),
    "neutral": dict(smile=0.0, brow_tilt=0.0, eye_size=0.12, mouth_width=0.40),
}
# FER-2013's Training balance, disgust raised so small sets still hold it
SYNTH_PRIOR = np.array([0.13, 0.05, 0.14, 0.24, 0.16, 0.11, 0.17])


def expression_face(rng: np.random.Generator, emotion: str, size: int = SIZE) -> np.ndarray:
    """A size x size greyscale cartoon face showing `emotion` (drawn at twice the size)."""
    params = {k: v + rng.normal(0, 0.12 * (abs(v) + 0.1)) for k, v in EXPRESSIONS[emotion].items()}
    params["smile"] = float(np.clip(params["smile"], -1, 1))
    face = cartoon.random_face(rng, **params)
    image, _ = cartoon.portrait(rng, face, 2 * size, scale=0.42, jitter=0.04)
    return np.asarray(image.convert("L").resize((size, size), Image.BILINEAR))


class FerFormat(Format):
    task = "emotion"
    synthetic_truth = LABELS_CSV

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        root = Path(root).resolve()
        if split not in USAGE:
            raise DataError(BadRow(str(root), 0, "split", f"'{split}' is not one of {', '.join(USAGE)}"))
        rows = _labelled_rows(root, split) if (root / LABELS_CSV).exists() else _folder_rows(root, split)
        return validated(rows, lambda r: _check_row(r, root),
                         lambda b: _parse_batch(b, root), skip_bad=skip_bad)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        out = Path(out)
        labels = predictions["label"].astype(str)
        unknown = ~labels.isin(EMOTIONS)
        if unknown.any():
            raise DataError(BadRow(str(out), 0, "label", f"'{labels[unknown].iloc[0]}' is not an emotion"))
        frame = pd.DataFrame({"file": predictions["file"].astype(str), "emotion_name": labels,
                              "emotion": [EMOTIONS.index(x) for x in labels]})
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub, ref, train = _joined(Path(submission), Path(truth))
        return emotion_metrics(ref["emotion_name"], sub["emotion_name"], train["emotion_name"])

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        from facelab import plots

        Path(out).mkdir(parents=True, exist_ok=True)
        sub, ref, _ = _joined(Path(submission), Path(truth))
        return [plots.confusion_matrix_png(ref["emotion_name"], sub["emotion_name"], EMOTIONS,
                                           Path(out) / "confusion_matrix.png", title=f"emotion: {Path(submission).name}")]

    def synthesize(self, out: Path, *, n: int = 350, seed: int = 0, emotions: tuple[str, ...] = EMOTIONS) -> Path:
        """48x48 greyscale cartoon faces whose expression (mouth, brows, eyes) shows the emotion,
        noisily; 5% of labels are replaced by a random emotion. n Training images, about 2n/5
        PublicTest and 3n/5 PrivateTest, in FER's folders with labels.csv. `emotions` limits the
        faces to some emotions (an easier task, e.g. for tests)."""
        rng = np.random.default_rng(seed)
        out = Path(out)
        shown = np.array([EMOTIONS.index(e) for e in emotions])
        prior = SYNTH_PRIOR[shown] / SYNTH_PRIOR[shown].sum()
        rows = []
        for split, size in split_sizes(n).items():
            drawn = shown[rng.choice(len(shown), size=size, p=prior)]
            labels = np.where(rng.random(size) < 0.05, shown[rng.integers(0, len(shown), size)], drawn)
            for i, (face, label) in enumerate(progress(zip(drawn, labels), f"emotion {split}", size)):
                file = f"{FOLDER[split]}/{EMOTIONS[label]}/{USAGE[split]}_{seed}{i:06d}.jpg"
                (out / file).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(expression_face(rng, EMOTIONS[face])).save(out / file, quality=95)
                rows.append((file, USAGE[split], EMOTIONS[label], int(label)))
        pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(out / LABELS_CSV, index=False)
        return out
