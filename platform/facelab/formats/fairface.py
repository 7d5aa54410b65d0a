"""FairFace labels with face embeddings (seed 004 predicts age, gender and race from FaceNet).

Files: `fairface_label_train.csv`, `fairface_label_val.csv` (`file,age,gender,race,service_test`,
e.g. `val/1.jpg,3-9,Male,East Asian,False`), optionally `fairface_label_test.csv` (labels
optional), and the embeddings of every image in `embeddings.parquet` (`file`, `embedding`
list<float>) or `embeddings.csv` (`file,embedding`, the embedding as the text of a list),
joined on `file`. The dimension is the file's own (512 for FaceNet); every row must have it.

Label vocabulary: FairFace's own (AGE_BINS, GENDERS, RACES) unless the data folder has a
`labels.json` listing the allowed values of some attributes, e.g. UTKFace-derived data with
`{"race": ["White", "Black", "Asian", "Indian", "Others"]}`. Labels that a spreadsheet turned
into dates (`03-Sep` for 3-9, `Oct-19` for 10-19) are bad rows that say so.

Read columns: `_file`, `_row`, `file`, `embedding` (float32), `age`, `gender`, `race` ("" where
a test file has no label). Submission predictions: a DataFrame `file,age,gender,race`, written
as that CSV (in test order when `data` holds a test file). Score: accuracy and macro-F1 per
attribute against a truth CSV in the label layout, joined on `file`, and each attribute's
accuracy per true gender, race and age bin (`age_accuracy|race=Black`: the fairness slices);
`plots`: a confusion matrix per attribute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import Format, Read, read_table, validated
from facelab.formats.embeddings import check_vector, join_embeddings, l2_normalize, parse_vector_text

AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
GENDERS = ("Male", "Female")
RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
ATTRIBUTES = ("age", "gender", "race")
DEFAULT_LABELS = {"age": AGE_BINS, "gender": GENDERS, "race": RACES}
FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv", "test": "fairface_label_test.csv"}
LABELS_FILE = "labels.json"

_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_MANGLED = re.compile(
    rf"^(\d{{1,4}}[-/ ]{_MONTH}|{_MONTH}[-/ ]\d{{1,4}}|\d{{1,4}}[-/.]\d{{1,2}}[-/.]\d{{1,4}}.*|\d{{5}})$", re.I)


def label_sets(folder: Path | None) -> dict[str, tuple[str, ...]]:
    """The allowed values per attribute: FairFace's, overridden by `<folder>/labels.json`."""
    labels = dict(DEFAULT_LABELS)
    path = Path(folder) / LABELS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return labels
    try:
        declared = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(BadRow(str(path), exc.lineno, "-", f"not valid JSON: {exc.msg}")) from None
    if not isinstance(declared, dict):
        raise DataError(BadRow(str(path), 1, "-", "expected an object mapping attribute to a list of labels"))
    for attr, values in declared.items():
        if attr not in labels:
            raise DataError(BadRow(str(path), 1, attr, f"unknown attribute (known: {', '.join(ATTRIBUTES)})"))
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise DataError(BadRow(str(path), 1, attr, "expected a non-empty list of label strings"))
        labels[attr] = tuple(values)
    return labels


def check_label(value: str, attr: str, allowed: tuple[str, ...]) -> None:
    """FieldError unless `value` is an allowed label; a spreadsheet-mangled one says so."""
    if value in allowed:
        return
    if _MANGLED.match(value.strip()):
        raise FieldError(attr, f"'{value}' looks spreadsheet-mangled (a spreadsheet turned the label into a "
                               "date or number); use the original CSV, or re-import every column as text")
    raise FieldError(attr, f"'{value}' is not one of {', '.join(allowed)}")


def _check_row(record: dict, labels: dict, dim: int, embeddings: str, labelled: bool) -> None:
    if not record["file"].strip():
        raise FieldError("file", "empty")
    for attr in ATTRIBUTES:
        value = record.get(attr) or ""
        if value or labelled:
            check_label(value, attr, labels[attr])
    _embedding(record["embedding"], dim, record["file"], embeddings)


def _embedding(value, dim: int, file: str, embeddings: str) -> np.ndarray:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise FieldError("embedding", f"no embedding for '{file}' in {embeddings}")
    if isinstance(value, str):
        return parse_vector_text(value, "embedding", dim)
    return check_vector(value, "embedding", dim)


def _parse_batch(batch: pd.DataFrame, dim: int) -> dict[str, np.ndarray]:
    vectors = [_embedding(v, dim, "", "") for v in batch["embedding"]]
    out = {name: batch[name].to_numpy() for name in ("_file", "_row", "file")}
    out["embedding"] = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    for attr in ATTRIBUTES:
        out[attr] = batch[attr].fillna("").to_numpy(object) if attr in batch else np.array([""] * len(batch), object)
    return out


EMBEDDINGS = "embeddings.parquet"


def write_embeddings(files: list[str], matrix: np.ndarray, folder: Path) -> Path:
    """`folder/embeddings.parquet`: one `file` and one float32 `embedding` list per row, written
    whole (a temporary name, then renamed)."""
    import pyarrow.parquet as pq

    from facelab.atomic import replacing

    matrix = np.asarray(matrix, np.float32)
    values = pa.array(matrix.ravel(), pa.float32())
    offsets = pa.array(np.arange(0, matrix.size + 1, matrix.shape[1]), pa.int32())
    path = Path(folder) / EMBEDDINGS
    with replacing(path) as tmp:
        pq.write_table(pa.table({"file": list(files), "embedding": pa.ListArray.from_arrays(offsets, values)}), tmp)
    return path


class FairFaceFormat(Format):
    task = "fairface"
    synthetic_truth = "test_truth.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        if split not in FILES:
            raise DataError(BadRow(str(root), 0, "-", f"unknown split '{split}' (have {', '.join(FILES)})"))
        root, labelled = Path(root), split != "test"
        table = read_table(root / FILES[split], ["file", *ATTRIBUTES] if labelled else ["file"], malformed="mark")
        table, dim, source = join_embeddings(table, root, "file")
        labels = label_sets(root)
        return validated(
            table,
            lambda r: _check_row(r, labels, dim, source.name, labelled),
            lambda b: _parse_batch(b, dim),
            skip_bad=skip_bad,
        )

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        out = Path(out)
        frame = _columns(predictions, "predictions", ["file", *ATTRIBUTES]).reset_index(drop=True)
        _check_labels(frame, "predictions", label_sets(data), first_row=1)
        test = Path(data) / FILES["test"] if data is not None else None
        if test is not None and test.is_file():
            order = read_table(test, ["file"], malformed="raise" if complete else "skip").column("file").to_pylist()
            if not complete:
                order = [name for name in order if name in set(frame["file"])]
            position = _positions(frame, "predictions", first_row=1)
            for i, name in enumerate(order):
                if name not in position:
                    raise DataError(BadRow(str(test), i + 2, "file", f"no prediction for '{name}'"))
            frame = frame.iloc[[position[name] for name in order]]
        out.parent.mkdir(parents=True, exist_ok=True)
        frame[["file", *ATTRIBUTES]].to_csv(out, index=False)
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        truth, submission = Path(truth), Path(submission)
        labels = label_sets(truth.parent)
        ref = read_table(truth, ["file"]).to_pandas()
        attrs = [a for a in ATTRIBUTES if a in ref]
        if not attrs:
            raise DataError(BadRow(str(truth), 1, "age",
                                   f"no label columns (expected some of {', '.join(ATTRIBUTES)})"))
        sub = read_table(submission, ["file", *attrs]).to_pandas()
        _check_labels(ref, str(truth), labels, first_row=2, attrs=attrs)
        _check_labels(sub, str(submission), labels, first_row=2, attrs=attrs)
        position = _positions(sub, str(submission), first_row=2)
        for i, name in enumerate(ref["file"]):
            if name not in position:
                raise DataError(BadRow(str(truth), i + 2, "file", f"no prediction for '{name}' in {submission}"))
        aligned = sub.iloc[[position[name] for name in ref["file"]]].reset_index(drop=True)
        scores = metrics.per_attribute({a: ref[a].tolist() for a in attrs}, {a: aligned[a].tolist() for a in attrs})
        return {**scores, **slice_accuracies(ref, aligned, attrs, labels)}

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        """A row-normalised confusion matrix per attribute."""
        from facelab import plots

        Path(out).mkdir(parents=True, exist_ok=True)
        ref, sub = pd.read_csv(truth, dtype=str, keep_default_na=False), pd.read_csv(submission, dtype=str,
                                                                                    keep_default_na=False)
        aligned = ref[["file"]].merge(sub, on="file", how="left")
        labels = label_sets(Path(truth).parent)
        return [plots.confusion_matrix_png(ref[a], aligned[a].fillna(""), labels[a], Path(out) / f"confusion_{a}.png",
                                           title=f"fairface {a}: {Path(submission).name}")
                for a in ATTRIBUTES if a in ref and a in sub]

    def synthesize(self, out: Path, *, n: int = 1000, seed: int = 0) -> Path:
        """FaceNet-like 512-d unit embeddings from which the labels are decodable, with noise.

        A latent holds gender (a strong linear signal: ~90%+ accuracy), race (7 centres in a
        12-d space, medium), age (a weak ordinal position along one direction and its square,
        the hardest) and 48 dimensions of identity nuisance; the embedding is a linear plus a
        tanh projection of the latent, plus noise, L2-normalised. Writes the train and val label
        files, fairface_label_test.csv (file only) with test_truth.csv, and embeddings.parquet.
        """
        rng = np.random.default_rng(seed)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        space = _LatentSpace(rng)
        files, vectors = [], []
        for split, size in {"train": n, "val": max(n // 4, 20), "test": max(n // 4, 20)}.items():
            age = rng.choice(len(AGE_BINS), size, p=[.02, .12, .105, .295, .22, .124, .072, .032, .012])
            gender = rng.choice(len(GENDERS), size, p=[.53, .47])
            race = rng.choice(len(RACES), size, p=[.19, .14, .15, .14, .13, .14, .11])
            names = [f"{split}/{i}.jpg" for i in range(1, size + 1)]
            frame = pd.DataFrame({"file": names, "age": [AGE_BINS[a] for a in age],
                                  "gender": [GENDERS[g] for g in gender], "race": [RACES[r] for r in race],
                                  "service_test": rng.random(size) < 0.45})
            if split == "test":
                frame[["file"]].to_csv(out / FILES["test"], index=False)
                frame.to_csv(out / "test_truth.csv", index=False)
            else:
                frame.to_csv(out / FILES[split], index=False)
            files += names
            vectors.append(space.embed(age, gender, race))
        write_embeddings(files, np.concatenate(vectors), out)
        return out


class _LatentSpace:
    """Calibrated (n=3000, logistic regression on val): gender ~0.94, race ~0.73, age ~0.44
    accuracy (majority class: 0.54, 0.20, 0.33)."""

    dim, race_dim, nuisance_dim = 512, 12, 48
    gender_signal, race_signal, age_signal, noise = 1.0, 0.55, 2.5, 0.3

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        width = 1 + self.race_dim + 2 + self.nuisance_dim
        self.linear = rng.normal(0, 1 / np.sqrt(width), (width, self.dim))
        self.bent = rng.normal(0, 1.5 / np.sqrt(width), (width, self.dim))
        self.races = rng.normal(0, 1, (len(RACES), self.race_dim))

    def embed(self, age: np.ndarray, gender: np.ndarray, race: np.ndarray) -> np.ndarray:
        rng, size = self.rng, len(age)
        position = (age + rng.normal(0, 0.9, size)) / (len(AGE_BINS) - 1) * 2 - 1  # ordinal, in about [-1, 1]
        latent = np.column_stack([
            self.gender_signal * (1 - 2 * gender) + rng.normal(0, 0.6, size),
            self.race_signal * self.races[race] + rng.normal(0, 0.8, (size, self.race_dim)),
            self.age_signal * position, self.age_signal * (position ** 2 - 0.4),
            rng.normal(0, 1, (size, self.nuisance_dim)),
        ])
        x = latent @ self.linear + np.tanh(latent @ self.bent) + rng.normal(0, self.noise, (size, self.dim))
        return l2_normalize(x)


def slice_accuracies(truth: pd.DataFrame, pred: pd.DataFrame, attrs: list[str], labels: dict) -> dict[str, float]:
    """Each attribute's accuracy within each true gender, race and age bin (rows aligned); the
    age slices show, e.g., how much of a gender error rate comes from infants."""
    out = {}
    for group in ("gender", "race", "age"):
        if group not in attrs:
            continue
        for value in labels[group]:
            rows = (truth[group] == value).to_numpy()
            if rows.any():
                out.update({f"{a}_accuracy|{group}={value}": float((truth[a][rows] == pred[a][rows]).mean())
                            for a in attrs})
    return out


def _columns(frame: pd.DataFrame, source: str, names: list[str]) -> pd.DataFrame:
    for name in names:
        if name not in frame:
            raise DataError(BadRow(source, 1, name, f"missing column (found {list(frame.columns)})"))
    return frame


def _check_labels(frame: pd.DataFrame, source: str, labels: dict, *, first_row: int,
                  attrs: tuple[str, ...] | list[str] = ATTRIBUTES) -> None:
    """A DataError naming the first row (and field) whose label is not allowed."""
    for i, row in enumerate(frame[list(attrs)].itertuples(index=False)):
        for attr, value in zip(attrs, row):
            try:
                check_label(str(value), attr, labels[attr])
            except FieldError as exc:
                raise DataError(BadRow(source, i + first_row, exc.field, exc.reason)) from None


def _positions(frame: pd.DataFrame, source: str, *, first_row: int) -> dict[str, int]:
    position: dict[str, int] = {}
    for i, name in enumerate(frame["file"]):
        if name in position:
            raise DataError(BadRow(source, i + first_row, "file", f"'{name}' is predicted twice"))
        position[name] = i
    return position
