"""Does a richer dlib encoding lift FairFace gender accuracy on UTKFace? (issue 5's 90% target)

The `fairface` task reads dlib's small (5-point) + large (68-point) encodings (256-d) and scores
87.2% gender on test, 59.4% on the 0-2 year olds. This script encodes a seeded sample of UTKFace
the way `facelab data convert --task fairface` does (dlib HOG, 240 px, 15% border) and adds two
variants, then fits the same classifiers on each feature set over one 70/30 split:

- `large_mirror`: the large encoding of the mirrored image (box mirrored too), averaged with the
  original (test-time flip averaging, done on the encoder);
- `large_pad1`: the large encoding with dlib's chip padding 1.0 instead of 0.25 (more hair, ears
  and clothing in the chip: context that might carry an infant's gender).

    .venv/bin/python scripts/fairface_encodings.py --n 1600 --seed 1

prints gender accuracy overall, under 10 years and from 10 up, for an RBF SVC and a logistic
regression on standardised features; `--out F.csv` writes the table.
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from facelab.config import data_root
from facelab.converters.fairface import UTK
from facelab.embed import UTK_OPTIONS


def encode_variants(image: np.ndarray) -> dict[str, np.ndarray] | None:
    """small, large, large of the mirrored image, large with chip padding 1.0; None without a face."""
    from facelab.faces import FaceEncoder, get_detector

    faces = get_detector(UTK_OPTIONS.detector, **UTK_OPTIONS.detector_options())(image)
    if not faces:
        return None
    box, width = faces[0].box, image.shape[1]
    mirrored = np.ascontiguousarray(image[:, ::-1])
    mirrored_box = (width - box[2], box[1], width - box[0], box[3])
    plain = FaceEncoder().encode(image, [box])
    return {"small": plain["small"][0], "large": plain["large"][0],
            "large_mirror": FaceEncoder().encode(mirrored, [mirrored_box], "large")["large"][0],
            "large_pad1": FaceEncoder(padding=1.0).encode(image, [box], "large")["large"][0]}


def _encode_file(path: str) -> dict[str, np.ndarray] | None:
    return encode_variants(np.asarray(Image.open(path).convert("RGB")))


def feature_sets(codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    flipped = (codes["large"] + codes["large_mirror"]) / 2
    return {"small + large (the task's embedding)": np.hstack([codes["small"], codes["large"]]),
            "small + flip-averaged large": np.hstack([codes["small"], flipped]),
            "small + large + large at padding 1.0": np.hstack([codes["small"], codes["large"], codes["large_pad1"]]),
            "large at padding 1.0 alone": codes["large_pad1"]}


def evaluate(codes: dict[str, np.ndarray], gender: np.ndarray, age: np.ndarray, seed: int) -> pd.DataFrame:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    order = np.random.default_rng(seed).permutation(len(gender))
    train, test = np.split(order, [int(0.7 * len(order))])
    child = age[test] < 10
    rows = []
    for name, features in feature_sets(codes).items():
        for model, estimator in (("svc", SVC(C=3)), ("logistic", LogisticRegression(C=0.1, max_iter=2000))):
            pipeline = make_pipeline(StandardScaler(), estimator).fit(features[train], gender[train])
            right = pipeline.predict(features[test]) == gender[test]
            rows.append({"features": name, "model": model, "gender_accuracy": right.mean(),
                         "under_10": right[child].mean(), "from_10": right[~child].mean(), "test": len(test)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1600, help="UTKFace images sampled")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the table to this CSV")
    args = parser.parse_args()
    root = data_root(args.data_root) / UTK
    labels = pd.read_csv(root / "labels.csv").sample(args.n, random_state=args.seed).reset_index(drop=True)
    with Pool(args.processes) as pool:
        found = list(tqdm(pool.imap(_encode_file, [str(root / f) for f in labels["file"]], chunksize=8),
                          total=len(labels), desc="encoding"))
    keep = [i for i, codes in enumerate(found) if codes is not None]
    codes = {key: np.stack([found[i][key] for i in keep]) for key in found[keep[0]]}
    table = evaluate(codes, labels["gender"].to_numpy()[keep], labels["age"].to_numpy()[keep], args.seed)
    print(f"{len(keep)} of {len(labels)} images with a face")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
