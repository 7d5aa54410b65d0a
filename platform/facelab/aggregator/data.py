"""The tracks data prepared once per fit or sweep, in the driver: people split into training
and validation (`is_val` when it splits people cleanly, else a seeded 20% of people), references
apart per side, the PCA of the training frames, the mean baseline's validation scores, and what
the data fixes in the config.

Where this departs from the seed, and why: the margins sit around a centre measured on the data
(`centre: auto`, see `_auto_centre`; the seed's 0.89/1.11 assume MCS2019's distances) and are
relative to it; `quality_power: auto` starts the norm power where the norm-weighted mean does
best on the training people (see `_auto_power`); the model starts from a data-driven point near
the (norm-weighted) mean instead of a random one (see `TrackData.initialise`), because the data
sets here have tens to hundreds of people, not the seed's 935, and from a random start training
never catches up with the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from facelab import metrics
from facelab.aggregator.network import load_torch
from facelab.errors import FacelabError
from facelab.formats import Read
from facelab.formats.base import LAZY_STEP_CPUS
from facelab.formats.embeddings import l2_normalize
from facelab.formats.tracks import mean_baseline, norm_weighted_mean, split_pairs

FPRS = (1e-6, 1e-5, 1e-4, 1e-3)
PCA_SAMPLE = 50_000  # frames the PCA is fitted on, at most
RIDGE_SAMPLE = 8_000  # sampled frames the decoder's starting point is fitted on (kept with the recipe)
CENTRE_SAMPLE = 2_000  # training tracks the automatic margin centre and power are measured on, at most
POWERS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # the quality powers `quality_power: auto` chooses from
AUTO_POWER_FPR = 1e-2  # the FPR the auto power is chosen at: lower ones rest on a few pairs of the training people


@dataclass
class TrackData:
    """What the recipe needs beside the tracks, made once in the driver: people, references
    (training and validation people apart), the PCA, and what the data fixes in the config."""

    person_index: dict[str, int]
    train_references: np.ndarray  # unit [M_train, D]
    train_reference_people: np.ndarray  # int [M_train]
    val_references: np.ndarray
    val_reference_people: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray
    pca_sample: np.ndarray  # training frames in PCA coordinates (prototypes are drawn from them)
    derived: dict = field(default_factory=dict)  # dim, pca_fitted, max_frames, centre and quality_power (auto)
    baseline: dict = field(default_factory=dict)  # the mean baseline's validation scores

    def val_scores(self, outputs: np.ndarray, people: np.ndarray, prefix: str) -> dict[str, float]:
        """TPR at each FPR in FPRS of validation tracks against the validation references, and
        the mean same-person and other-person distances."""
        positive, negative = split_pairs(outputs, people, self.val_references, self.val_reference_people)
        out = {prefix + k: v for k, v in metrics.tpr_at_fpr(positive, negative, FPRS).items() if k.startswith("tpr@")}
        out.update({f"{prefix}positive_distance": float(positive.mean()),
                    f"{prefix}negative_distance": float(negative.mean())})
        return out

    def initialise(self, model, config: dict) -> None:
        """The fitted PCA, and a start close to the baseline: the encoder's rows are training
        frames drawn at random (prototypes; logits = similarity / temperature), and the decoder
        is the ridge regression that puts each sampled frame back from its code. The untrained
        model is then the mean of the reconstructed frames. (From a random start the softmax
        over ~1000 small logits is nearly uniform, every track gets almost the same vector,
        and the seed's 15k tracks are needed to climb out; the small data sets here are not.)"""
        torch = load_torch()
        code_size = int(config["code_size"])
        rng = np.random.default_rng(int(config["seed"]))
        sample = torch.from_numpy(self.pca_sample)
        picks = rng.choice(len(sample), code_size, replace=code_size > len(sample))
        prototypes = sample[picks]
        codes = torch.softmax(sample @ prototypes.T / float(config["temperature"]), dim=-1).double()
        gram = codes.T @ codes
        ridge = 1e-6 * torch.trace(gram) / code_size
        decoder = torch.linalg.solve(gram + ridge * torch.eye(code_size, dtype=gram.dtype), codes.T @ sample.double())
        with torch.no_grad():
            model.mean.copy_(torch.from_numpy(self.pca_mean))
            model.components.copy_(torch.from_numpy(self.pca_components))
            model.encoder.weight.copy_(prototypes)
            model.decoder.weight.copy_(decoder.T.float())

    def config(self, config: dict) -> dict:
        """The training config: the user's, with what the data fixes (and `auto` resolved)."""
        out = {**config, **{k: v for k, v in self.derived.items() if k not in AUTO}}
        for key in AUTO:
            if config[key] == "auto":
                out[key] = self.derived[key]
        return out


AUTO = ("centre", "quality_power")  # config keys that `auto` resolves from the training data


def track_summaries(batch: pd.DataFrame) -> pd.DataFrame:
    """Per track: who, which split, how many frames, and the mean baseline's descriptor."""
    return pd.DataFrame({"_row": batch["_row"], "person_id": batch["person_id"], "is_val": batch["is_val"],
                         "n_frames": [len(f) for f in batch["frames"]],
                         "baseline": [mean_baseline(f) for f in batch["frames"]]})


def _val_people(summary: pd.DataFrame, share: float, seed: int) -> set[str]:
    """The file's `is_val` people when it splits people cleanly and leaves both sides; else a
    seeded share of people."""
    flags = summary.groupby("person_id")["is_val"].agg(["min", "max"])
    if (flags["min"] == flags["max"]).all() and 0 < flags["min"].sum() < len(flags):
        return set(flags.index[flags["max"].astype(bool)])
    people = np.array(sorted(flags.index))
    count = max(1, round(share * len(people)))
    return set(np.random.default_rng(seed).permutation(people)[:count])


def _sampled(dataset, size: int, limit: int, seed: int):
    """A seeded random sample of about `limit` of the dataset's `size` units (all when fewer)."""
    fraction = min(1.0, limit / max(1, size))
    return dataset.random_sample(fraction, seed=seed) if fraction < 1.0 else dataset


def _fit_pca(dataset, frames: int, dim: int, wanted: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of unit training frames (a random sample of at most PCA_SAMPLE of the `frames`):
    the mean, the axes, and the sample in PCA coordinates."""
    sample = _sampled(dataset, frames, PCA_SAMPLE, seed)
    frames = np.concatenate([np.asarray(f, np.float32) for f in sample.select_columns(["frames"]).to_pandas().frames])
    unit = l2_normalize(frames)
    mean = unit.mean(axis=0)
    _, _, axes = np.linalg.svd(unit - mean, full_matrices=False)
    size = max(1, min(wanted, dim, len(axes)))
    axes = axes[:size].astype(np.float32)
    kept = unit[np.random.default_rng(seed).permutation(len(unit))[:RIDGE_SAMPLE]]
    return mean.astype(np.float32), axes, ((kept - mean) @ axes.T).astype(np.float32)


def _auto_centre(summary: pd.DataFrame, refs: np.ndarray, ref_people: np.ndarray, seed: int) -> float:
    """Midway between the mean baseline's median same-person distance and the 1% quantile of
    its other-person distances (the hard negatives), on the training people. The seed's margins
    (0.89 and 1.11 around 1.0) sit there on MCS2019's distances; measuring the centre on the data
    fits other encoders and data sets too (dlib's distances are about half as large)."""
    rows = summary.sample(min(len(summary), CENTRE_SAMPLE), random_state=seed)
    positive, negative = split_pairs(np.stack(rows.baseline), rows.person_index.to_numpy(), refs, ref_people)
    return float((np.median(positive) + np.quantile(negative, 0.01)) / 2)


def _auto_power(tracks: pd.DataFrame, people: np.ndarray, refs: np.ndarray, ref_people: np.ndarray) -> float:
    """The power in POWERS whose norm-weighted track means (`norm_weighted_mean`) reach the
    highest TPR at AUTO_POWER_FPR against the training references (the smallest on a tie).
    dlib's descriptors of blurred or occluded frames are shorter, so on ORL tracks a high power
    is chosen; on unit-norm descriptors every power gives the mean and 0 is chosen."""
    scores = []
    for power in POWERS:
        means = np.stack([norm_weighted_mean(f, power) for f in tracks.frames])
        positive, negative = split_pairs(means, people, refs, ref_people)
        result = metrics.tpr_at_fpr(positive, negative, (AUTO_POWER_FPR,))
        scores.append(next(v for k, v in result.items() if k.startswith("tpr@")))
    return float(POWERS[int(np.argmax(scores))])


def _power_sample(train, tracks: int, index: dict[str, int], seed: int) -> pd.DataFrame:
    """At most CENTRE_SAMPLE training tracks (frames and person index) for `_auto_power`."""
    rows = _sampled(train, tracks, CENTRE_SAMPLE, seed).select_columns(["frames", "person_id"]).to_pandas()
    return rows.assign(person_index=rows.person_id.map(index))


def prepare_tracks(data: dict[str, Read], config: dict) -> tuple[dict, TrackData]:
    """Split the training tracks by person, fit the PCA, measure the baseline, the centre and
    the quality power: the trainer's datasets ("train", "val") and the `TrackData`."""
    tracks = data["train"].dataset.materialize()
    summary = tracks.map_batches(track_summaries, batch_format="pandas").to_pandas()
    refs = data["references"].dataset.to_pandas()
    if summary.empty or refs.empty:
        raise FacelabError("tracks: no training tracks or no reference descriptors to train on")
    val_people = _val_people(summary, float(config["val_share"]), int(config["seed"]))
    known = set(refs.person_id)
    people = sorted(set(summary.person_id) & known)
    if len(set(people) - val_people) < 2 or len(set(people) & val_people) < 2:
        raise FacelabError(f"tracks: need at least 2 training and 2 validation people with references; "
                           f"have {len(people)} people, {len(val_people)} for validation")
    index = {p: i for i, p in enumerate(people)}
    summary = summary[summary.person_id.isin(known)].assign(person_index=lambda f: f.person_id.map(index))
    ref_vectors = l2_normalize(np.stack(refs.descriptor).astype(np.float32))
    ref_people = refs.person_id.map(lambda p: index.get(p, -1)).to_numpy(np.int64)
    is_val_ref = refs.person_id.isin(val_people).to_numpy()
    train_ref = ~is_val_ref & (ref_people >= 0)
    val_names = sorted(val_people)
    train = tracks.filter(lambda row: row["person_id"] not in val_people and row["person_id"] in index,
                          num_cpus=LAZY_STEP_CPUS)
    val = tracks.filter(lambda row: row["person_id"] in val_people, num_cpus=LAZY_STEP_CPUS)
    dim = int(ref_vectors.shape[1])
    train_summary = summary[~summary.person_id.isin(val_people)]
    seed = int(config["seed"])
    mean, components, sample = _fit_pca(train, int(train_summary.n_frames.sum()), dim, int(config["pca_dim"]), seed)
    power_rows = _power_sample(train, len(train_summary), index, seed)
    prepared = TrackData(
        person_index=index,
        train_references=ref_vectors[train_ref], train_reference_people=ref_people[train_ref],
        val_references=ref_vectors[is_val_ref], val_reference_people=ref_people[is_val_ref],
        pca_mean=mean, pca_components=components, pca_sample=sample,
        derived={"dim": dim, "pca_fitted": len(components), "max_frames": int(summary.n_frames.max()),
                 "centre": _auto_centre(train_summary, ref_vectors[train_ref], ref_people[train_ref], seed),
                 "quality_power": _auto_power(power_rows, power_rows.person_index.to_numpy(),
                                              ref_vectors[train_ref], ref_people[train_ref]),
                 "val_people": len(val_names), "train_people": len(people) - len(val_names)})
    val_summary = summary[summary.person_id.isin(val_people)]
    prepared.baseline = prepared.val_scores(np.stack(val_summary.baseline), val_summary.person_index.to_numpy(),
                                            "val_baseline_")
    return {"train": train, "val": val}, prepared
