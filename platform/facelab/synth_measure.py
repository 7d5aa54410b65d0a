"""Generated faces measured the way the HexaFace seed (002, sections 4.5 / 5.5) checked its GAN:
the dlib HOG and mediapipe face rates of the samples and of the held-out real faces at the same
size, the training set's share of women (labels), and the share of women among samples and real
faces by a gender classifier handed in by the caller (`GenderHead`: the promoted age-gender
model's gender head, which `jobs.synth.gender_head` looks up in the model store).

Used by `facelab synth --measure`, `facelab score --task synth` (the synth format) and, for the
face rate, the synth task's per-epoch evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.errors import FacelabError
from facelab.formats.synth import read_samples
from facelab.formats.utkface import labels_table, split_names
from facelab.vision import load_image, resized

DETECTORS = ("hog", "mediapipe")
NO_HEAD = "pending: no gender head given"


@dataclass(frozen=True)
class GenderHead:
    """A gender classifier of face images and the run it comes from: `predict({"image": uint8
    [N, H, W, 3]})["gender"]` gives one code per image (1: a woman), as the age-gender
    task's batch predictor does."""

    run_id: str
    predict: Callable[[dict], dict] = field(compare=False)


def face_rates(images: list[np.ndarray], detectors=DETECTORS) -> dict[str, float]:
    """Per detector, the fraction of images in which it finds at least one face."""
    from facelab.faces import get_detector

    rates = {}
    for name in detectors:
        detect = get_detector(name)
        rates[name] = float(np.mean([len(detect(image)) > 0 for image in images])) if images else float("nan")
    return rates


def real_faces(data: Path, size: int) -> list[np.ndarray]:
    """The held-out (val split) real faces of a UTKFace folder, at size x size."""
    root = Path(data)
    files = labels_table(root).column("file").to_pylist()
    return [resized(load_image(root / f), size) for f, s in zip(files, split_names(files)) if s == "val"]


def training_gender(data: Path) -> tuple[float, int]:
    """(share of women, faces) among the GAN's training faces (all but UTKFace's val split), by label."""
    table = labels_table(Path(data)).to_pandas()
    train = table[split_names(table["file"].tolist()) != "val"]
    codes = pd.to_numeric(train["gender"], errors="coerce").dropna()
    return float((codes == 1).mean()), int(len(codes))


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def gender_shares(samples: list[np.ndarray], real: list[np.ndarray], head: GenderHead | str | None) -> dict:
    """Share of women among samples and real faces by the gender head, or, without one, the
    note that the gender measure is pending (`head` may be that note)."""
    if not isinstance(head, GenderHead):
        return {"gender": head or NO_HEAD}

    def share(images: list[np.ndarray]) -> float:
        codes = np.concatenate([head.predict({"image": np.stack(images[i:i + 64])})["gender"]
                                for i in range(0, len(images), 64)])
        return float((codes == 1).mean())

    out = {"gender_head_run": head.run_id, "female_share_samples": share(samples)}
    out["female_share_samples_ci95_low"], out["female_share_samples_ci95_high"] = wilson(out["female_share_samples"],
                                                                                         len(samples))
    if real:
        out["female_share_real"] = share(real)
        out["female_share_gap"] = out["female_share_samples"] - out["female_share_real"]
    return out


def measure(samples: Path, data: Path | None = None, *, gender: GenderHead | str | None = None,
            detectors=DETECTORS) -> dict:
    """Face rates (HOG, mediapipe) of a samples folder and of the UTKFace folder's held-out real
    faces at the samples' size; the training set's share of women (labels); the share of women
    among samples and real faces by the gender head (see `gender_shares`)."""
    _, images = read_samples(samples)
    if not images:
        raise FacelabError(f"{samples}: no samples to measure")
    out: dict = {"n_samples": float(len(images))}
    out.update({f"face_rate_{k}": v for k, v in face_rates(images, detectors).items()})
    real = real_faces(data, images[0].shape[0]) if data is not None else []
    if real:
        out["n_real"] = float(len(real))
        out.update({f"real_face_rate_{k}": v for k, v in face_rates(real, detectors).items()})
        out["female_share_train_labels"], _ = training_gender(data)
    out.update(gender_shares(images, real, gender))
    return out


def measure_png(result: dict, path: Path) -> Path:
    """Bars: face rates of samples vs real faces per detector; shares of women."""
    from facelab import plots

    rates = {name: {"samples": result.get(f"face_rate_{name}"), "real faces": result.get(f"real_face_rate_{name}")}
             for name in DETECTORS if f"face_rate_{name}" in result}
    women = {"women": {"training labels": result.get("female_share_train_labels"),
                       "real faces (head)": result.get("female_share_real"),
                       "samples (head)": result.get("female_share_samples")}}
    return plots.grouped_bars_png({"face found (" + k + ")": v for k, v in rates.items()} | women, path,
                                  title="synth: samples vs held-out real faces", ylabel="fraction")
