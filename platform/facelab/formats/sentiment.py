"""AI Blitz XIII sentiment-classification: `embeddings,label` CSVs of 512-d face embeddings.

Read columns: `_file`, `_row`, `embedding` (512 float32), `label` (str; "" in test.csv).
Submission predictions: a DataFrame with `label`, one row per test row in test.csv order;
written as sample_submission.csv (its rows, `label` filled).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import ROW, Format, Read, read_table, require_file, split_sizes, validated
from facelab.formats.embeddings import parse_vector_text

DIM = 512
LABELS = ("negative", "neutral", "positive")


def _check_row(record: dict, *, labelled: bool) -> None:
    parse_vector_text(record["embeddings"], "embeddings", DIM)
    label = record.get("label", "")
    if labelled and label not in LABELS:
        raise FieldError("label", f"'{label}' is not one of {', '.join(LABELS)}")


def _parse_batch(batch: pd.DataFrame) -> pd.DataFrame:
    embeddings = np.array([json.loads(t) for t in batch["embeddings"]], dtype=np.float32)
    out = pd.DataFrame({"_file": batch["_file"], "_row": batch["_row"]})
    out["embedding"] = list(embeddings)
    out["label"] = batch["label"] if "label" in batch else ""
    return out


class SentimentFormat(Format):
    task = "sentiment"
    synthetic_truth = "test_truth.csv"

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        table = read_table(Path(root) / f"{split}.csv", ["embeddings"] if split == "test" else ["embeddings", "label"],
                           malformed="mark")
        labelled = split != "test"
        return validated(
            table,
            lambda r: _check_row(r, labelled=labelled),
            _parse_batch,
            skip_bad=skip_bad,
        )

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        out = Path(out)
        template_path = Path(data) / "sample_submission.csv" if data else None
        if template_path and template_path.is_file():
            template = pd.read_csv(template_path)
        else:
            template = pd.DataFrame({"embeddings": ["[]"] * len(predictions)})
        if "_row" in predictions:  # rows rejected with --skip-bad stay in place, unlabelled
            test = Path(data) / "test.csv" if data else None
            # `_row` is a line of test.csv; blank lines there are no rows of the template
            lines = read_table(test, [], malformed="mark")[ROW].to_pylist() if test and test.is_file() else \
                list(range(2, len(template) + 2))
            position = {line: i for i, line in enumerate(lines)}
            labels = pd.Series("", index=template.index, dtype=object)
            labels[[position[int(line)] for line in predictions["_row"]]] = predictions["label"].to_numpy()
        elif len(template) == len(predictions):
            labels = list(predictions["label"])
        else:
            raise DataError(BadRow(str(template_path), 0, "label", f"{len(template)} rows but {len(predictions)} predictions"))
        template["label"] = labels
        out.parent.mkdir(parents=True, exist_ok=True)
        template.to_csv(out, index=False)
        return out

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        sub = pd.read_csv(require_file(submission, "submission"))
        ref = pd.read_csv(require_file(truth, "truth"))
        for path, frame in ((submission, sub), (truth, ref)):
            if "label" not in frame:
                raise DataError(BadRow(str(path), 1, "label", "missing column"))
        if len(sub) != len(ref):
            raise DataError(BadRow(str(submission), 0, "label", f"{len(sub)} rows, truth has {len(ref)}"))
        unknown = ~sub["label"].isin(LABELS)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(BadRow(str(submission), i + 2, "label", f"'{sub['label'][i]}' is not a label"))
        return metrics.classification(ref["label"].tolist(), sub["label"].tolist())

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        from facelab import plots

        Path(out).mkdir(parents=True, exist_ok=True)
        sub, ref = pd.read_csv(submission), pd.read_csv(truth)
        return [plots.confusion_matrix_png(ref["label"], sub["label"], LABELS, Path(out) / "confusion_matrix.png",
                                           title=f"sentiment: {Path(submission).name}")]

    def synthesize(self, out: Path, *, n: int = 1000, seed: int = 0) -> Path:
        """Three overlapping, non-linearly separable classes in a ReLU-like 512-d space.

        Each class is a mixture of 3 sub-clusters on a low-dimensional manifold; labels are
        flipped for 8% of rows, so a good model reaches roughly 0.75-0.9 weighted F1 and a
        linear or majority model clearly less.
        """
        rng = np.random.default_rng(seed)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        latent_dim = 12
        mixing = rng.normal(0, 1, (latent_dim, DIM))
        centres = rng.normal(0, 1.25, (len(LABELS), 3, latent_dim))
        sizes = split_sizes(n, minimum=30)
        for split, size in sizes.items():
            y = rng.choice(len(LABELS), size=size, p=[0.45, 0.2, 0.35])
            sub = rng.integers(0, 3, size=size)
            z = centres[y, sub] + rng.normal(0, 1.0, (size, latent_dim))
            x = np.maximum(0.0, np.tanh(z) @ mixing * 0.6 + rng.normal(0, 0.35, (size, DIM)) + 0.3)
            flip = rng.random(size) < 0.08
            y = np.where(flip, rng.integers(0, len(LABELS), size=size), y)
            labels = [LABELS[i] for i in y]
            text = ["[" + ", ".join(f"{v:.6f}" for v in row) + "]" for row in x]
            if split == "test":
                pd.DataFrame({"embeddings": text}).to_csv(out / "test.csv", index=False)
                pd.DataFrame({"embeddings": text, "label": labels}).to_csv(out / "test_truth.csv", index=False)
                pd.DataFrame({"embeddings": text, "label": LABELS[0]}).to_csv(out / "sample_submission.csv", index=False)
            else:
                pd.DataFrame({"embeddings": text, "label": labels}).to_csv(out / f"{split}.csv", index=False)
        return out
