"""UTKFace (aligned and cropped faces) read in place: age, gender and race from one folder.

Layout, as downloaded: JPEG crops named `<age>_<gender>_<race>_<timestamp>.jpg.chip.jpg`
(gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others), optionally with
a `labels.csv` (`file,age,gender,race`, `file` relative to the folder) that repeats them. With
labels.csv the reader takes the labels from it (and a file name whose own labels disagree is a
bad row); without it, from the file names (a name that does not parse is a bad row).

Splits: UTKFace has none, so train / val / test (70 / 15 / 15) are a seeded permutation
(SPLIT_SEED) of every listed file, bad rows included, so a split never changes when rows are
skipped. Read columns: `_file`, `_row`, `file`, `path` (absolute image path), `age`, `gender`,
`race` (int64).

Submission predictions: a DataFrame `file, age, gender, race` (age a number of years, gender and
race UTKFace's codes), written as that CSV in test order. Score: age MAE, gender and race
accuracy (and macro-F1), each also per gender and per race (the fairness slices), and the age
binned into the AI Blitz XIII decades (`age_bin_f1_weighted`, `age_bin_accuracy`), against a
truth that is a UTKFace folder (its test split) or a CSV in the labels.csv layout (every row).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.age_bins import age_bin
from facelab.formats.base import FILE, ROW, Format, Read, read_table, validated
from facelab.formats.images import check_image

LABELS_CSV = "labels.csv"
COLUMNS = ("file", "age", "gender", "race")
GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
MAX_AGE = 116  # the oldest face in UTKFace
SPLITS = ("train", "val", "test")
SPLIT_SEED = 0
HELD_OUT = 0.15  # val and test each


def split_names(files: list[str], seed: int = SPLIT_SEED) -> np.ndarray:
    """Each file's split: a seeded permutation of the sorted names, 15% test, 15% val (at
    least one each), the rest train."""
    order = np.argsort(np.array(files, dtype=object), kind="stable")
    ranks = np.empty(len(files), np.int64)
    ranks[order[np.random.default_rng(seed).permutation(len(files))]] = np.arange(len(files))
    held = max(1, int(round(HELD_OUT * len(files))))
    return np.where(ranks < held, "test", np.where(ranks < 2 * held, "val", "train"))


def name_labels(file: str) -> tuple[str, str, str] | None:
    """(age, gender, race) as written in a UTKFace file name, or None if it does not parse."""
    parts = PurePosixPath(file).name.split("_")
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    return parts[0], parts[1], parts[2]


def labels_table(root: Path) -> pa.Table:
    """Every listed image as text columns file, age, gender, race (+ `_file`, `_row`):
    from labels.csv, else from the names of the JPEGs under `root`."""
    root = Path(root)
    if (root / LABELS_CSV).is_file():  # a row with the wrong number of fields is that row's bad row
        return read_table(root / LABELS_CSV, COLUMNS, malformed="mark")
    files = sorted(str(p.relative_to(root).as_posix()) for p in root.rglob("*.jpg"))
    if not files:
        raise DataError(BadRow(str(root), 0, "-", f"no {LABELS_CSV} and no JPEG images: not a UTKFace folder"))
    labels = [name_labels(f) or ("", "", "") for f in files]
    columns = {"file": files, **{c: [lab[i] for lab in labels] for i, c in enumerate(COLUMNS[1:])}}
    columns[FILE] = [str(root / f) for f in files]
    columns[ROW] = list(range(1, len(files) + 1))
    return pa.table({k: pa.array(v, pa.int64() if k == ROW else pa.string()) for k, v in columns.items()})


def parse_code(text: str, field: str, top: int) -> int:
    """An integer label in 0..top, or FieldError."""
    text = str(text).strip()
    if not text.isdigit() or int(text) > top:
        raise FieldError(field, f"'{text}' is not an integer in 0..{top}")
    return int(text)


def _check_row(record: dict, root: Path) -> None:
    file = record["file"]
    name = PurePosixPath(file)
    if not file or name.is_absolute() or ".." in name.parts:
        raise FieldError("file", f"'{file}' is not a relative image path")
    named = name_labels(file)
    if named is None and not record[FILE].endswith(LABELS_CSV):  # labels come from the name
        raise FieldError("file", f"'{name.name}' is not a UTKFace name (<age>_<gender>_<race>_<time>.jpg)")
    values = (parse_code(record["age"], "age", MAX_AGE), parse_code(record["gender"], "gender", 1),
              parse_code(record["race"], "race", len(RACES) - 1))
    if named is not None:
        for field, value, text in zip(COLUMNS[1:], values, named):
            if int(text) != value:
                raise FieldError(field, f"{value} disagrees with the file name '{name.name}'")
    check_image(root / file, "file")


def _parse_batch(batch: pd.DataFrame, root: Path) -> pd.DataFrame:
    out = pd.DataFrame({FILE: batch[FILE], ROW: batch[ROW], "file": batch["file"],
                        "path": [str(root / f) for f in batch["file"]]})
    for column in COLUMNS[1:]:
        out[column] = batch[column].astype(np.int64)
    return out


def _labelled_frame(path: Path) -> pd.DataFrame:
    """A labels.csv-layout file as a frame with integer labels; a bad cell names its row."""
    frame = read_table(path, COLUMNS).to_pandas()
    for column, top in (("age", MAX_AGE), ("gender", 1), ("race", len(RACES) - 1)):
        frame[column] = _codes(frame, column, top, str(path))
    return frame


def _codes(frame: pd.DataFrame, column: str, top: int, source: str) -> np.ndarray:
    out = np.empty(len(frame), np.int64)
    for i, (text, row) in enumerate(zip(frame[column], frame[ROW])):
        try:
            out[i] = parse_code(text, column, top)
        except FieldError as exc:
            raise DataError(BadRow(source, int(row), column, exc.reason)) from None
    return out


def slice_scores(truth: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    """Age MAE, gender and race accuracy / macro-F1 overall and per true gender and race.

    `truth` and `pred` are row-aligned frames with integer `gender`, `race` and numeric `age`.
    Slice keys read `age_mae/gender=female`, `race_accuracy/race=Black`, ...
    """
    def scores(rows: np.ndarray) -> dict[str, float]:
        attrs = metrics.per_attribute({a: truth[a].to_numpy()[rows] for a in ("gender", "race")},
                                      {a: pred[a].to_numpy()[rows] for a in ("gender", "race")})
        error = np.abs(pred["age"].to_numpy(float)[rows] - truth["age"].to_numpy(float)[rows])
        return {"age_mae": float(error.mean()), **attrs, "n": float(rows.sum())}

    everything = np.ones(len(truth), bool)
    out = {k: v for k, v in scores(everything).items() if k != "n"}
    # the age regressor binned as AI Blitz XIII's age task (compared with the age-bins classifier)
    binned = metrics.classification([age_bin(a) for a in truth["age"]], [age_bin(a) for a in pred["age"]])
    out.update({f"age_bin_{k}": v for k, v in binned.items()})
    out["n"] = float(len(truth))
    for attr, names in (("gender", GENDERS), ("race", RACES)):
        for code, name in enumerate(names):
            rows = truth[attr].to_numpy() == code
            if rows.any():
                out.update({f"{k}/{attr}={name}": v for k, v in scores(rows).items()
                            if not k.endswith("_f1_macro")})
    return out


class UTKFaceFormat(Format):
    task = "age-gender"
    synthetic_truth = "test_truth.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        if split not in SPLITS:
            raise DataError(BadRow(str(root), 0, "-", f"unknown split '{split}' (have {', '.join(SPLITS)})"))
        root = Path(root).resolve()
        table = labels_table(root)
        table = table.filter(pa.array(split_names(table.column("file").to_pylist()) == split))
        return validated(table, lambda r: _check_row(r, root),
                         lambda b: _parse_batch(b, root), skip_bad=skip_bad)

    def test_order(self, data: Path) -> list[str]:
        """The files of a folder's test split, in listing order."""
        table = labels_table(Path(data))
        files = table.column("file").to_pylist()
        return [f for f, s in zip(files, split_names(files)) if s == "test"]

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        out = Path(out)
        for column in COLUMNS:
            if column not in predictions:
                raise DataError(BadRow("predictions", 1, column, f"missing column (found {list(predictions.columns)})"))
        frame = predictions[list(COLUMNS)].reset_index(drop=True)
        if data is not None:
            position = {name: i for i, name in enumerate(frame["file"])}
            order = [name for name in self.test_order(data) if complete or name in position]
            for i, name in enumerate(order):
                if name not in position:
                    raise DataError(BadRow(str(data), i + 1, "file", f"no prediction for test file '{name}'"))
            frame = frame.iloc[[position[name] for name in order]]
        frame = frame.assign(age=np.round(frame["age"].astype(float), 2), gender=frame["gender"].astype(int),
                             race=frame["race"].astype(int))
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        return out

    def _aligned(self, submission: Path, truth: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        truth, submission = Path(truth), Path(submission)
        if truth.is_dir():
            ref = _labelled_frame(truth / LABELS_CSV) if (truth / LABELS_CSV).is_file() else None
            if ref is None:
                table = labels_table(truth).to_pandas()
                ref = table.assign(**{c: _codes(table, c, t, str(truth)) for c, t in
                                      (("age", MAX_AGE), ("gender", 1), ("race", len(RACES) - 1))})
            ref = ref[split_names(ref["file"].tolist()) == "test"].reset_index(drop=True)
        else:
            ref = _labelled_frame(truth)
        sub = read_table(submission, COLUMNS).to_pandas()
        age = pd.to_numeric(sub["age"], errors="coerce")
        if not np.isfinite(age).all():
            i = int(np.flatnonzero(~np.isfinite(age))[0])
            raise DataError(BadRow(str(submission), i + 2, "age", f"'{sub['age'][i]}' is not a number"))
        sub = sub.assign(age=age, gender=_codes(sub, "gender", 1, str(submission)),
                         race=_codes(sub, "race", len(RACES) - 1, str(submission)))
        position: dict[str, int] = {}
        for i, name in enumerate(sub["file"]):
            if name in position:
                raise DataError(BadRow(str(submission), i + 2, "file", f"'{name}' is predicted twice"))
            position[name] = i
        for i, name in enumerate(ref["file"]):
            if name not in position:
                raise DataError(BadRow(str(submission), 0, "file", f"no prediction for '{name}' (truth {truth})"))
        return ref, sub.iloc[[position[name] for name in ref["file"]]].reset_index(drop=True)

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        return slice_scores(*self._aligned(submission, truth))

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        ref, sub = self._aligned(submission, truth)
        return confusion_plots(ref, sub, Path(out), "test")

    def synthesize(self, out: Path, *, n: int = 300, seed: int = 0) -> Path:
        """Drawn 200x200 faces named and listed as UTKFace: race sets the skin tone, gender the
        hair (long for women; short, bald or a beard for men), age shows noisily (grey hair,
        forehead lines, eye size, face length). Writes images/, labels.csv and test_truth.csv
        (the test split's rows)."""
        from facelab.formats import cartoon
        from facelab.formats.age_bins import aged_face
        from facelab.formats.images import save_jpeg
        from facelab.progress import progress

        rng = np.random.default_rng(seed)
        out = Path(out)
        tones = (cartoon.SKIN_TONES[0], cartoon.SKIN_TONES[6], cartoon.SKIN_TONES[2], cartoon.SKIN_TONES[4],
                 cartoon.SKIN_TONES[3])  # per race code
        rows = []
        for i in progress(range(n), "utkface synth"):
            age = int(np.clip(rng.gamma(2.0, 16.0), 1, 100))
            gender, race = int(rng.random() < 0.5), int(rng.choice(len(RACES), p=[.45, .15, .15, .15, .10]))
            face = aged_face(rng, age)
            style = 2 if gender else int(rng.choice([0, 1]))
            face = face.vary(skin=cartoon.mix(tones[race], (128, 128, 128), 0.08), hair_style=style,
                             beard=bool(not gender and rng.random() < 0.5))
            image, _ = cartoon.portrait(rng, face, 200, scale=0.32)
            file = f"images/{age}_{gender}_{race}_{20170101000000000 + i}.jpg.chip.jpg"
            save_jpeg(image, out / file, quality=92)
            rows.append({"file": file, "age": age, "gender": gender, "race": race})
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame.to_csv(out / LABELS_CSV, index=False)
        frame[split_names(frame["file"].tolist()) == "test"].to_csv(out / self.synthetic_truth, index=False)
        return out


def confusion_plots(truth: pd.DataFrame, pred: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """Gender and race confusion matrices (UTKFace names) as PNGs in `out`."""
    from facelab import plots

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for attr, names in (("gender", GENDERS), ("race", RACES)):
        written.append(plots.confusion_matrix_png(
            [names[c] for c in truth[attr]], [names[c] for c in pred[attr]], names,
            out / f"{attr}_confusion.png", title=f"{attr}: {title} ({len(truth)} faces)"))
    return written
