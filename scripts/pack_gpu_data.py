"""Pack the real FER-2013 and UTKFace folders into files small enough to travel to a GPU machine.

    .venv/bin/python scripts/pack_gpu_data.py --data ../shared/data --out .gpudata

writes `.gpudata/fer2013.npz` and `.gpudata/utkface.npz` (`/.gpudata/` is ignored through
.git/info/exclude) and prints their sizes and the size of what one `run` call carries (the
working tree, the wheels in `.whl` and one or both packs) against the 64 MiB limit.

Every image keeps its exact JPEG bytes (no re-encoding): the bytes every image of a data set
starts with (the JPEG headers: 328 bytes of each of FER's 1.8 KB files, 159 of UTKFace's) are
stored once as `prefix`, each image's remainder in `blob` at `offsets`, so `prefix + blob[a:b]`
is the original file, byte for byte (checked for every image while packing). labels.csv travels
as it is (zlib-compressed; its `file` column lists the images in pack order). `unpack` writes
the folder back (the images at their labels.csv paths, and labels.csv), so the formats read it
as they read ../shared/data.

Sizes: FER-2013 packs to 47.9 MiB, UTKFace (7,000 faces at 200 px, not resized) to 31.3 MiB; with
the repo (~1 MiB) and the pydantic wheels (~3 MiB) the two do not fit one 64 MiB call together,
so each travels in its own call (`scripts/gpu_runs.py --only emotion|age-gender`). Resizing
UTKFace to the 112 px of the default config would not make them fit either: beside FER it
would have to take under 9 MiB (1.3 KB a face), so its images travel unresized.

`--subset N` packs a seeded sample of about N images per data set (tests); `select_subset` is
the sample `scripts/gpu_runs.py --tiny` takes too.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = {"fer2013": "emotion", "utkface": "age-gender"}  # folder -> the task it serves
LABELS_CSV = "labels.csv"
CARRY_LIMIT_MIB = 64
TARGET_MIB = 60
SUBSET_SEED = 0
FER_SUBSET_SHARES = {"Training": 0.6, "PublicTest": 0.2, "PrivateTest": 0.2}


def pack_path(root: Path, name: str) -> Path:
    return Path(root) / f"{name}.npz"


def select_subset(labels: pd.DataFrame, name: str, n: int, seed: int = SUBSET_SEED) -> pd.DataFrame:
    """About `n` rows of a labels.csv, seeded: FER 60/20/20 from Training/PublicTest/PrivateTest
    (so every split keeps rows), UTKFace a plain sample (the format splits whatever it lists)."""
    rng = np.random.default_rng(seed)
    if name != "fer2013":
        return labels.iloc[np.sort(rng.choice(len(labels), size=min(n, len(labels)), replace=False))]
    parts = []
    for usage, share in FER_SUBSET_SHARES.items():
        rows = np.flatnonzero(labels["Usage"].to_numpy() == usage)
        parts.append(np.sort(rng.choice(rows, size=min(len(rows), max(1, int(round(share * n)))), replace=False)))
    return labels.iloc[np.concatenate(parts)]


def read_labels(folder: Path) -> pd.DataFrame:
    path = Path(folder) / LABELS_CSV
    if not path.is_file():
        sys.exit(f"{path}: no labels.csv (expected the folder as in ../shared/data)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "file" not in frame:
        sys.exit(f"{path}: no 'file' column (found {list(frame.columns)})")
    return frame


def pack(folder: Path, out: Path, subset: int | None = None) -> dict:
    """One data folder as one .npz; returns its numbers (images, bytes before and after)."""
    folder, name = Path(folder), Path(folder).name
    labels = read_labels(folder)
    text = (folder / LABELS_CSV).read_bytes()
    if subset:
        labels = select_subset(labels, name, subset)
        text = labels.to_csv(index=False).encode()
    files = labels["file"].tolist()
    images = []
    for i, file in enumerate(files):
        path = folder / file
        if not path.is_file():
            sys.exit(f"{folder / LABELS_CSV}: row {i + 2}, field file: '{file}' does not exist")
        images.append(path.read_bytes())
    prefix = os.path.commonprefix(images) if images else b""
    rest = [image[len(prefix):] for image in images]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rest])]).astype(np.int64)
    blob = np.frombuffer(b"".join(rest), np.uint8)
    packed = {"prefix": np.frombuffer(prefix, np.uint8), "blob": blob, "offsets": offsets,
              "labels_csv_zlib": np.frombuffer(zlib.compress(text, 9), np.uint8)}
    for i, image in enumerate(images):  # the promise: every image comes back byte for byte
        if image_bytes(packed, i) != image:
            sys.exit(f"{folder / files[i]}: packing does not round-trip")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **packed)
    return {"data": name, "images": len(files), "original_mib": sum(map(len, images)) / 2 ** 20,
            "prefix_bytes": len(prefix), "packed_mib": out.stat().st_size / 2 ** 20, "file": str(out)}


def image_bytes(packed, i: int) -> bytes:
    offsets = packed["offsets"]
    return packed["prefix"].tobytes() + packed["blob"][offsets[i]:offsets[i + 1]].tobytes()


def unpack(path: Path, dest: Path, subset: int | None = None) -> Path:
    """Write a pack back as a data folder (`subset`: only `select_subset`'s rows, labels.csv cut to them)."""
    dest = Path(dest)
    with np.load(path) as packed:
        arrays = {k: packed[k] for k in packed.files}
    text = zlib.decompress(arrays["labels_csv_zlib"].tobytes())
    labels = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)
    keep = set(select_subset(labels, Path(path).stem, subset)["file"]) if subset else None
    dest.mkdir(parents=True, exist_ok=True)
    for i, file in enumerate(labels["file"].tolist()):
        if keep is None or file in keep:
            target = dest / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(image_bytes(arrays, i))
    if keep is not None:
        text = labels[labels["file"].isin(keep)].to_csv(index=False).encode()
    (dest / LABELS_CSV).write_bytes(text)
    return dest


def copy_subset(folder: Path, dest: Path, subset: int) -> Path:
    """`select_subset`'s rows of a data folder copied into `dest` as a data folder of their own."""
    labels = select_subset(read_labels(folder), Path(folder).name, subset)
    for file in labels["file"]:
        (Path(dest) / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(folder) / file, Path(dest) / file)
    labels.to_csv(Path(dest) / LABELS_CSV, index=False)
    return Path(dest)


def travelling_mib(repo: Path) -> float:
    """What a `run` call sends besides carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, capture_output=True,
                            check=True).stdout.split(b"\0")
    return sum((repo / f.decode()).stat().st_size for f in listed if f and (repo / f.decode()).is_file()) / 2 ** 20


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2 ** 20 if folder.exists() else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="the folder holding fer2013/ and utkface/")
    parser.add_argument("--out", type=Path, default=Path(".gpudata"))
    parser.add_argument("--only", choices=sorted(DATASETS), action="append", help="pack only this data set")
    parser.add_argument("--subset", type=int, help="a seeded sample of about N images per data set (tests)")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    for name in args.only or list(DATASETS):
        info = pack(args.data / name, pack_path(args.out, name), args.subset)
        print(f"{info['data']}: {info['images']} images, {info['original_mib']:.1f} MiB of JPEG -> "
              f"{info['file']} {info['packed_mib']:.1f} MiB (common prefix {info['prefix_bytes']} bytes each)")
    base = travelling_mib(repo) + folder_mib(repo / ".whl")
    print(f"working tree {travelling_mib(repo):.1f} MiB + .whl {folder_mib(repo / '.whl'):.1f} MiB = {base:.1f} MiB")
    sizes = {name: pack_path(args.out, name).stat().st_size / 2 ** 20 for name in DATASETS
             if pack_path(args.out, name).is_file()}
    for label, names in [*((f"--only {DATASETS[n]}", [n]) for n in sizes), ("both", list(sizes))]:
        total = base + sum(sizes[n] for n in names)
        verdict = ("fits" if total < TARGET_MIB else
                   "over the 60 MiB target" if total < CARRY_LIMIT_MIB else "does NOT fit")
        print(f"one call carrying {' + '.join(names)} ({label}): {total:.1f} MiB of {CARRY_LIMIT_MIB}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
