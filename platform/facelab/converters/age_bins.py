"""Real faces in the AI Blitz XIII age-prediction layout, from UTKFace (`facelab data convert --task age-bins`).

Every UTKFace crop (`utkface/labels.csv`: file, age, gender, race) becomes `<split>/<ImageID>.jpg`
labelled with its decade bin `0-10` ... `90-100` (age // 10; ages of 100 and over go to `90-100`,
where the Blitz bins end -- UTKFace reaches 116). The JPEGs are copied byte for byte: 200x200 face
crops, not resized to the Blitz 512x512. The split is seeded and stratified by bin in the Blitz
proportions 4:2:3 (train:val:test); `train.csv` and `val.csv` hold `ImageID,age`, the test labels
go to `test_truth.csv` (what `facelab score` takes) and `sample_submission.csv` lists the test ids.
`sources.csv` (`ImageID,split,source,age`) maps every image to its UTKFace file for checking.
`n` keeps a stratified sample of n images. `split="utkface"` keeps instead every image in its
split of the `age-gender` task (facelab.formats.utkface.split_names: 70/15/15), so the age-bins
classifier and the binned age regressor are scored on the same test faces (`facelab score --task
age-gender` reports `age_bin_f1_weighted` and `age_bin_accuracy`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.errors import FacelabError
from facelab.formats.age_bins import AGE_BINS, age_bin
from facelab.formats.images import ID, random_ids
from facelab.progress import progress

SOURCE = "utkface"
PROPORTIONS = {"train": 4, "val": 2, "test": 3}


def stratified_split(bins: pd.Series, rng: np.random.Generator) -> pd.Series:
    """train / val / test for every row, in PROPORTIONS within each bin."""
    split = pd.Series("", index=bins.index, dtype=object)
    total = sum(PROPORTIONS.values())
    for _, rows in bins.groupby(bins):
        order = rng.permutation(rows.index.to_numpy())
        cuts = np.round(np.cumsum([PROPORTIONS[s] for s in PROPORTIONS]) / total * len(order)).astype(int)
        for name, part in zip(PROPORTIONS, np.split(order, cuts[:-1])):
            split[part] = name
    return split


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, split: str = "stratified",
            **_) -> dict:
    source = Path(data_root) / SOURCE
    table = source / "labels.csv"
    if not table.is_file():
        raise FacelabError(f"{table}: UTKFace labels not found")
    labels = pd.read_csv(table)
    missing = [c for c in ("file", "age") if c not in labels]
    if missing:
        raise FacelabError(f"{table}: missing columns {missing}")
    labels = labels[[(source / f).is_file() for f in labels["file"]]].reset_index(drop=True)
    if labels.empty:
        raise FacelabError(f"{source}: none of the images in labels.csv exist")
    rng = np.random.default_rng(seed)
    labels["bin"] = labels["age"].map(age_bin)
    if n is not None and n < len(labels):  # the same share of every bin (at least one image each)
        shuffled = labels.iloc[rng.permutation(len(labels))]
        labels = pd.concat([rows.head(max(1, round(n * len(rows) / len(labels))))
                            for _, rows in shuffled.groupby("bin")]).reset_index(drop=True)
    if split == "utkface":
        from facelab.formats.utkface import split_names

        everything = pd.read_csv(table)["file"].tolist()  # the age-gender split is over every listed file
        labels["split"] = pd.Series(split_names(everything), index=everything).loc[labels["file"]].to_numpy()
    elif split == "stratified":
        labels["split"] = stratified_split(labels["bin"], rng)
    else:
        raise FacelabError(f"age-bins: unknown split '{split}' (stratified or utkface)")
    labels = labels.iloc[rng.permutation(len(labels))].reset_index(drop=True)  # CSVs not ordered by bin
    labels[ID] = random_ids(rng, len(labels))
    out = Path(out)
    for name in PROPORTIONS:
        (out / name).mkdir(parents=True, exist_ok=True)
    for row in progress(labels.itertuples(), "age-bins images", len(labels)):
        shutil.copyfile(source / row.file, out / row.split / f"{getattr(row, ID)}.jpg")
    frame = labels.rename(columns={"bin": "age_bin"})
    for name in ("train", "val"):
        part = frame[frame["split"] == name]
        pd.DataFrame({ID: part[ID], "age": part["age_bin"]}).to_csv(out / f"{name}.csv", index=False)
    test = frame[frame["split"] == "test"]
    pd.DataFrame({ID: test[ID], "age": test["age_bin"]}).to_csv(out / "test_truth.csv", index=False)
    pd.DataFrame({ID: test[ID], "age": ""}).to_csv(out / "sample_submission.csv", index=False)
    pd.DataFrame({ID: frame[ID], "split": frame["split"], "source": f"{SOURCE}/" + frame["file"],
                  "age": frame["age"]}).to_csv(out / "sources.csv", index=False)
    counts = frame.groupby(["split", "age_bin"]).size().unstack(fill_value=0)
    return {"task": "age-bins", "out": str(out), "images": len(frame),
            **{name: int((frame["split"] == name).sum()) for name in PROPORTIONS},
            "per_bin": {b: int(counts[b].sum()) if b in counts else 0 for b in AGE_BINS},
            "ages_over_100_in_90_100": int((frame["age"] >= 100).sum())}
