"""MCS2019 video face recognition (VisionLabs): per-frame descriptors of face tracks.

Files (train / test):
- `train_df.csv` / `test_df.csv`: one row per frame (`crop_path,warp_path,person_id,video_id,
  track_id,frame_id,bbox_*,x0..y4,is_val`; test has no person_id / is_val), row-aligned with
- `train_df_descriptors.npy` / `test_descriptors.npy`: float32 (n_frames, dim), 512-d and
  L2-normalised in MCS2019; the dimension is taken from the data (128 for dlib encodings) and
  norms are kept (un-normalised descriptors carry quality: a low norm is an uncertain frame);
- `train_df_track_order_df.csv` (`track_id,person_id`) / `track_order_df.csv` (`track_id`):
  the tracks, in the order a submission must follow;
- `train_gt_df.csv` + `train_gt_descriptors.npy`: reference descriptors per person.

Read columns (one row per track, in track order): `_file`, `_row` (the track-order file and
line), `track_id`, `person_id` ("" in test), `is_val` (bool; False in test), `frames`
(float32 (n_frames, dim), in frame_id order). Bad frames (empty ids, a frame_id that is not an
integer, a descriptor with NaN) are named by their line in the frames CSV; bad tracks (no
frames, person_id disagreeing with its frames) by their line in the track order.

Submission predictions: a DataFrame `track_id`, `descriptor` (dim floats: the dimension of the
test descriptors of `data`, else of the first row); written as `agg_descriptors.npy`, float32
(n_tracks, dim), reordered to the track order of `data` (a data folder holding
`track_order_df.csv`, or a track order CSV). Truth for `score`: a folder with
`track_order_df.csv` (`track_id,person_id`), `gt_df.csv` (`person_id`, ...) and
`gt_descriptors.npy`. Score: TPR at FPR 1e-6 / 1e-5 / 1e-4 of the L2 distance between every
track and every reference (same person positive). `plots`: the ROC (log-scale FPR) of the
submission and, when the truth folder sits in a data folder with the test frames, of the mean
baseline on the same tracks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from facelab import metrics
from facelab.errors import BadRow, DataError, FieldError
from facelab.formats.base import Format, Read, read_table, validated
from facelab.formats.embeddings import check_vector, l2_normalize, load_matrix, mapped, nonfinite_rows

DIM = 512  # MCS2019's descriptors; the synthetic generator's dimension
SUBMISSION = "agg_descriptors.npy"
TRUTH = "test_truth"
_TRUE, _FALSE = {"True", "true", "1", "1.0"}, {"False", "false", "0", "0.0"}
INDEX = "_index"  # a frame's row in the descriptors .npy


@dataclass(frozen=True)
class Layout:
    frames: str
    descriptors: str
    order: str
    references: tuple[str, str]  # gt csv, gt npy


LAYOUTS = {
    "train": Layout("train_df.csv", "train_df_descriptors.npy", "train_df_track_order_df.csv",
                    ("train_gt_df.csv", "train_gt_descriptors.npy")),
    "test": Layout("test_df.csv", "test_descriptors.npy", "track_order_df.csv",
                   (f"{TRUTH}/gt_df.csv", f"{TRUTH}/gt_descriptors.npy")),
}


def mean_baseline(frames: np.ndarray) -> np.ndarray:
    """The challenge baseline: the mean of a track's unit frame descriptors, L2-normalised.

    Frames are normalised first, as in the challenge's files, so the baseline never uses the
    norm (quality) that un-normalised descriptors carry."""
    return l2_normalize(l2_normalize(np.asarray(frames, np.float32)).mean(axis=0))


def norm_weighted_mean(frames: np.ndarray, power: float) -> np.ndarray:
    """A track's unit frames averaged with weights (norm / the track's largest norm) ** power,
    L2-normalised: power 0 is `mean_baseline`, a large power keeps the highest-norm frames. The
    ratio to the largest norm only keeps the weights in float range at high powers."""
    frames = np.asarray(frames, np.float32)
    norms = np.linalg.norm(frames, axis=1)
    weights = (norms / max(float(norms.max()), 1e-12)) ** float(power)
    return l2_normalize((l2_normalize(frames) * weights[:, None]).sum(axis=0))


def descriptor_dim(root: Path, split: str) -> int:
    """The dimension of a split's frame descriptors (read from the `.npy` header)."""
    return int(load_matrix(Path(root) / LAYOUTS[split].descriptors).shape[1])


def load_references(csv: Path, npy: Path, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference descriptors and their person ids; any bad row is a DataError."""
    table = read_table(csv, ["person_id"])
    matrix = load_matrix(npy, rows=table.num_rows, rows_of=csv, dim=dim)
    people = np.array(table.column("person_id").to_pylist(), dtype=object)
    lines = table.column("_row").to_pylist()  # true lines: blank lines are counted
    empty = np.flatnonzero([not p.strip() for p in people])
    if len(empty):
        raise DataError(BadRow(str(csv), lines[int(empty[0])], "person_id", "empty"))
    bad = nonfinite_rows(matrix)
    if len(bad):
        raise DataError(BadRow(str(csv), lines[int(bad[0])], "descriptor", f"row {bad[0]} of {npy} has NaN or infinity"))
    return people, np.asarray(matrix, np.float32)


def _check_frame(record: dict, npy: str, labelled: bool) -> None:
    if not record["track_id"].strip():
        raise FieldError("track_id", "empty")
    try:
        int(record["frame_id"])
    except ValueError:
        raise FieldError("frame_id", f"'{record['frame_id']}' is not an integer") from None
    if labelled:
        if not record["person_id"].strip():
            raise FieldError("person_id", "empty")
        if record["is_val"] not in _TRUE | _FALSE:
            raise FieldError("is_val", f"'{record['is_val']}' is not True or False")
    index = record[INDEX]
    if not np.isfinite(mapped(npy)[index]).all():
        raise FieldError("descriptor", f"row {index} of {npy} has NaN or infinity")


def _check_track(record: dict, frames_csv: str, labelled: bool) -> None:
    if not record["track_id"].strip():
        raise FieldError("track_id", "empty")
    if record["_duplicate"]:
        raise FieldError("track_id", f"'{record['track_id']}' appears earlier in the track order")
    if len(record["_frames"]) == 0:
        raise FieldError("track_id", f"track '{record['track_id']}' has no frames in {frames_csv}")
    if labelled:
        if not record["person_id"].strip():
            raise FieldError("person_id", "empty")
        if record["_frame_people"] != record["person_id"]:
            raise FieldError("person_id", f"'{record['person_id']}' but its frames in {frames_csv} "
                                          f"say '{record['_frame_people']}'")
        if record["_is_val"] not in ("True", "False"):
            raise FieldError("is_val", f"its frames in {frames_csv} disagree on is_val")


def _gather_frames(batch: pd.DataFrame, npy: str) -> pd.DataFrame:
    matrix = mapped(npy)
    out = pd.DataFrame({"_file": batch["_file"], "_row": batch["_row"], "track_id": batch["track_id"]})
    out["person_id"] = batch["person_id"] if "person_id" in batch else ""
    out["is_val"] = batch["_is_val"] == "True"
    out["frames"] = [np.asarray(matrix[np.asarray(idx, np.int64)], np.float32) for idx in batch["_frames"]]
    return out


def _track_table(order: pa.Table, frames: pd.DataFrame, labelled: bool) -> pa.Table:
    """The track order with each track's frame indices (frame_id order) and what its frames say."""
    frames = frames.assign(_frame=frames["frame_id"].astype(int))
    groups = frames.sort_values(["track_id", "_frame"]).groupby("track_id", sort=False)
    indices = groups["_index"].apply(list).to_dict()
    ids = order.column("track_id").to_pylist()
    columns = {
        "_frames": pa.array([indices.get(t, []) for t in ids], pa.list_(pa.int64())),
        "_duplicate": pa.array(pd.Series(ids).duplicated().to_numpy()),
        "_frame_people": pa.array([""] * len(ids), pa.string()),
        "_is_val": pa.array(["False"] * len(ids), pa.string()),
    }
    if labelled:
        people = groups["person_id"].agg(lambda s: "|".join(sorted(set(s)))).to_dict()
        flags = frames["is_val"].map(lambda v: "True" if v in _TRUE else "False")
        is_val = flags.groupby(frames["track_id"]).agg(lambda s: ",".join(sorted(set(s)))).to_dict()
        columns["_frame_people"] = pa.array([people.get(t, "") for t in ids], pa.string())
        columns["_is_val"] = pa.array([is_val.get(t, "False") for t in ids], pa.string())
    for name, values in columns.items():
        order = order.append_column(name, values)
    return order


class TracksFormat(Format):
    task = "tracks"
    splits = ("train", "test")
    synthetic_truth = TRUTH
    submission_name = SUBMISSION

    def read(self, root: Path, split: str, *, skip_bad: bool = False) -> Read:
        if split not in LAYOUTS:
            raise DataError(BadRow(str(root), 0, "-", f"unknown split '{split}' (have {', '.join(LAYOUTS)})"))
        root, layout, labelled = Path(root).resolve(), LAYOUTS[split], split == "train"
        frames_csv, npy = root / layout.frames, str(root / layout.descriptors)
        ids = ["track_id", "person_id"] if labelled else ["track_id"]
        # a line with the wrong number of fields is that frame's (or track's) bad row; it keeps its place
        frame_table = read_table(frames_csv, [*ids, "frame_id"] + (["is_val"] if labelled else []), malformed="mark")
        load_matrix(npy, rows=frame_table.num_rows, rows_of=frames_csv, dim=self._reference_dim(root, split))
        # a frame's row of the .npy is its position among the data rows (`_row` counts blank lines too)
        frame_table = frame_table.append_column(INDEX, pa.array(np.arange(frame_table.num_rows), pa.int64()))
        frames = validated(frame_table, lambda r: _check_frame(r, npy, labelled),
                           skip_bad=skip_bad)
        keep = [*ids, "frame_id", INDEX] + (["is_val"] if labelled else [])
        good = frames.dataset.select_columns(keep).to_pandas()
        tracks = _track_table(read_table(root / layout.order, ids, malformed="mark"), good, labelled)
        read = validated(
            tracks,
            lambda r: _check_track(r, str(frames_csv), labelled),
            lambda b: _gather_frames(b, npy),
            skip_bad=skip_bad,
        )
        return Read(read.dataset, frames.bad + read.bad)

    @staticmethod
    def _reference_dim(root: Path, split: str) -> int | None:
        """The references' dimension, which the frames must share (None when they are absent)."""
        npy = Path(root) / LAYOUTS[split].references[1]
        return int(load_matrix(npy).shape[1]) if npy.is_file() else None

    def references(self, root: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """(person ids, reference descriptors) of a split; test references live in test_truth/."""
        csv, npy = LAYOUTS[split].references
        return load_references(Path(root) / csv, Path(root) / npy)

    def write_submission(self, predictions: pd.DataFrame, out: Path, *, data: Path | None = None,
                         complete: bool = True) -> Path:
        out = Path(out)
        path = out if out.suffix == ".npy" else out / SUBMISSION
        ids, vectors = list(predictions["track_id"]), list(predictions["descriptor"])
        folder = Path(data) if data is not None and Path(data).is_dir() else None
        dim = descriptor_dim(folder, "test") if folder is not None and (folder / LAYOUTS["test"].descriptors).is_file() \
            else (len(vectors[0]) if vectors else DIM)
        checked = {}
        for i, (track, vector) in enumerate(zip(ids, vectors)):
            try:
                checked[track] = check_vector(vector, "descriptor", dim)
            except FieldError as exc:
                raise DataError(BadRow("predictions", i + 1, exc.field, f"track '{track}': {exc.reason}")) from None
        if data is not None:
            order_path = Path(data) if Path(data).is_file() else Path(data) / LAYOUTS["test"].order
            order = read_table(order_path, ["track_id"]).column("track_id").to_pylist()
            order = order if complete else [track for track in order if track in checked]
            for i, track in enumerate(order):
                if track not in checked:
                    raise DataError(BadRow(str(order_path), i + 2, "track_id", f"no descriptor for track '{track}'"))
            ids = order
        rows = [checked[t] for t in ids]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32))
        return path

    def score(self, submission: Path, truth: Path) -> dict[str, float]:
        positive, negative = self.pair_distances(submission, truth)
        return metrics.tpr_at_fpr(positive, negative)

    def pair_distances(self, submission: Path, truth: Path) -> tuple[np.ndarray, np.ndarray]:
        """L2 distances of the submission's same-person and other-person (track, reference) pairs."""
        truth, submission = Path(truth), Path(submission)
        if submission.is_dir():
            submission = submission / SUBMISSION
        order_csv = truth / "track_order_df.csv"
        order = read_table(order_csv, ["track_id", "person_id"])
        people, references = load_references(truth / "gt_df.csv", truth / "gt_descriptors.npy")
        tracks = load_matrix(submission, rows=order.num_rows, rows_of=order_csv, dim=references.shape[1])
        bad = nonfinite_rows(tracks)
        if len(bad):
            track = order.column("track_id")[int(bad[0])].as_py()
            raise DataError(BadRow(str(submission), int(bad[0]) + 1, "descriptor",
                                   f"track '{track}' has NaN or infinity"))
        return split_pairs(np.asarray(tracks, np.float32), np.array(order.column("person_id").to_pylist(), dtype=object),
                           references, people)

    def plots(self, submission: Path, truth: Path, out: Path) -> list[Path]:
        """ROC (log-scale FPR) of the submission, with the mean baseline's when the test frames are
        beside the truth folder (the layout `synthesize` and the converters write)."""
        from facelab import plots

        curves = {"submission": self.pair_distances(submission, truth)}
        data = Path(truth).parent
        if (data / LAYOUTS["test"].frames).is_file() and (data / LAYOUTS["test"].descriptors).is_file():
            baseline = self._baseline_submission(data, Path(out) / "baseline_agg_descriptors.npy")
            curves["mean baseline"] = self.pair_distances(baseline, truth)
        Path(out).mkdir(parents=True, exist_ok=True)
        return [plots.roc_png(curves, Path(out) / "roc.png", title=f"tracks: {Path(submission).name}")]

    def _baseline_submission(self, data: Path, path: Path) -> Path:
        """The mean baseline's submission for the test tracks of `data` (numpy only, no Ray)."""
        tracks = track_frames(data, "test")
        frame = pd.DataFrame({"track_id": list(tracks), "descriptor": [mean_baseline(f) for f in tracks.values()]})
        return self.write_submission(frame, path, data=data)

    def synthesize(self, out: Path, *, n: int = 60, seed: int = 0) -> Path:
        """Synthetic MCS2019 files (see `facelab.formats.tracks_synthetic.synthesize`)."""
        from facelab.formats.tracks_synthetic import synthesize

        return synthesize(Path(out), n=n, seed=seed)


def split_pairs(tracks: np.ndarray, track_people: np.ndarray, references: np.ndarray,
                reference_people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(same-person, other-person) L2 distances between aggregated tracks and references."""
    distances = metrics.pairwise_l2(tracks, references)
    same = np.asarray(track_people, dtype=object)[:, None] == np.asarray(reference_people, dtype=object)[None, :]
    return distances[same], distances[~same]


def track_frames(root: Path, split: str) -> dict[str, np.ndarray]:
    """Each track's frames (frame_id order), in track order, straight from the files with pandas
    (for small jobs such as a baseline plot; `read` is the checked, parallel reader)."""
    layout = LAYOUTS[split]
    frames = pd.read_csv(Path(root) / layout.frames, usecols=["track_id", "frame_id"], dtype={"track_id": str})
    matrix = np.load(Path(root) / layout.descriptors, mmap_mode="r")
    order = pd.read_csv(Path(root) / layout.order, usecols=["track_id"], dtype=str).track_id
    frames = frames.assign(_index=np.arange(len(frames))).sort_values(["track_id", "frame_id"])
    groups = frames.groupby("track_id", sort=False)["_index"].apply(np.asarray).to_dict()
    return {t: np.asarray(matrix[groups[t]], np.float32) for t in order}


def write_layout(out: Path, train: dict, test: dict, rng: np.random.Generator) -> Path:
    """Write the MCS2019 files of a train and a test split (dicts as `tracks_synthetic.World.people` makes:
    `frames` (person_id, video_id, track_id, frame_id, is_val, and optionally the image path
    and geometry columns), `descriptors` row-aligned with it, `order`, `gt`, `gt_descriptors`)
    and the test truth in test_truth/."""
    (out / TRUTH).mkdir(parents=True, exist_ok=True)
    _write_split(out, LAYOUTS["train"], train, labelled=True, rng=rng)
    test_order = _write_split(out, LAYOUTS["test"], test, labelled=False, rng=rng)
    test_order.to_csv(out / TRUTH / "track_order_df.csv", index=False)
    return out


GEOMETRY = ["bbox_x", "bbox_y", "bbox_w", "bbox_h", *[f"{a}{k}" for k in range(5) for a in "xy"]]


def _write_split(out: Path, layout: Layout, data: dict, *, labelled: bool, rng: np.random.Generator) -> pd.DataFrame:
    """Write one split's files; returns its track order (with person ids). Image paths and
    geometry the data lacks are made up (synthetic data has no images)."""
    frames, descriptors = data["frames"], data["descriptors"]
    shuffle = rng.permutation(len(frames))  # the files need not list frames in track order
    frames, descriptors = frames.iloc[shuffle].reset_index(drop=True), descriptors[shuffle]
    if "crop_path" not in frames:
        names = [f"{t}/{f}" for t, f in zip(frames.track_id, frames.frame_id)]
        frames = pd.concat([_image_paths(names, "crops", "warps"), frames, _geometry(rng, len(frames))], axis=1)
    columns = ["crop_path", "warp_path", "person_id", "video_id", "track_id", "frame_id", *GEOMETRY, "is_val"]
    order = data["order"].sample(frac=1, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
    gt = data["gt"]
    if "crop_path" not in gt:
        gt = pd.concat([_image_paths(gt.person_img_id, "gt", "gt_warps"), gt, _geometry(rng, len(gt))], axis=1)
    csv, npy = layout.references
    if labelled:
        frames[columns].to_csv(out / layout.frames, index=False)
        order.to_csv(out / layout.order, index=False)
    else:
        frames[[c for c in columns if c not in ("person_id", "is_val")]].to_csv(out / layout.frames, index=False)
        order[["track_id"]].to_csv(out / layout.order, index=False)
    np.save(out / layout.descriptors, descriptors)
    gt.to_csv(out / csv, index=False)
    np.save(out / npy, data["gt_descriptors"])
    return order


def _image_paths(names, crops: str, warps: str) -> pd.DataFrame:
    return pd.DataFrame({"crop_path": [f"{crops}/{n}.jpg" for n in names],
                         "warp_path": [f"{warps}/{n}.jpg" for n in names]})


def _geometry(rng: np.random.Generator, count: int) -> pd.DataFrame:
    """Plausible face boxes and 5 landmarks (unused by the task, present in the files)."""
    x, y = rng.integers(0, 1500, count), rng.integers(0, 800, count)
    size = rng.integers(60, 220, count)
    columns = {"bbox_x": x, "bbox_y": y, "bbox_w": size, "bbox_h": (size * 1.2).astype(int)}
    anchors = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    for k, (ax, ay) in enumerate(anchors):
        columns[f"x{k}"] = np.round(x + ax * size + rng.normal(0, 2, count), 2)
        columns[f"y{k}"] = np.round(y + ay * size * 1.2 + rng.normal(0, 2, count), 2)
    return pd.DataFrame(columns)
