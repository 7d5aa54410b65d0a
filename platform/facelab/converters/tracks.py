"""Real face tracks in the MCS2019 layout from ORL/AT&T (seed 003: aggregate a track's descriptors).

ORL has 40 people x 10 greyscale 92x112 photos and no video, so each track is made from one
photo: 10 frames, each the photo under a random mix of blur, noise, a small rotation, an
occluding block and a lighting change, like the motion blur, overlaps, head turns and light
of the challenge's video frames. Per track a share of frames (Beta(0.5, 1), a third on average)
is badly degraded; the rest mildly, so the plain mean of a track is pulled off by its bad frames
as in MCS2019. Every frame is encoded whole by dlib's ResNet ("small", 5-point alignment;
`facelab.faces.FaceEncoder.encode_whole`) in a Ray Data actor pool: 128-d descriptors, kept
un-normalised as dlib gives them.

Per person (seeded): 3 photos are the references (`*_gt_df.csv`, encoded clean, L2-normalised
like MCS2019's), the other 7 each give `tracks_per_photo` tracks. People are split: `test_people`
into test (truth in test_truth/), the rest into train, `val_people` of them with is_val. `n`
takes the first n people (s1..sn) only. Paths name the source photo (`orl_faces/s1/3.pgm`) and
the box is the whole image; landmarks are left empty (nothing is detected).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelab.errors import FacelabError
from facelab.formats.embeddings import l2_normalize
from facelab.formats.tracks import GEOMETRY, write_layout

ORL = "orl_faces"
PHOTOS, FRAMES, REFERENCES = 10, 10, 3
BAD_SHARE = (0.5, 1.0)  # Beta parameters of a track's share of badly degraded frames


def augment(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """One video-like frame of a greyscale photo: severity 0 is the photo, 1 a frame hardly
    recognisable (heavy blur or noise, a large occluder, harsh light, a tilted head)."""
    from PIL import Image, ImageFilter

    height, width = image.shape
    picture = Image.fromarray(image).rotate(float(rng.uniform(-1, 1) * (4 + 14 * severity)),
                                            resample=Image.BILINEAR, fillcolor=int(image.mean()))
    if rng.random() < 0.3 + 0.7 * severity:
        picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.5 + 3.5 * severity))))
    frame = np.asarray(picture, np.float32)
    gamma = float(np.exp(rng.uniform(-1, 1) * (0.15 + 0.85 * severity)))
    gradient = np.linspace(-1, 1, width)[None, :] * rng.uniform(-1, 1) * 60 * severity
    frame = 255 * (frame / 255) ** gamma * rng.uniform(1 - 0.5 * severity, 1 + 0.2 * severity) + gradient
    if rng.random() < 0.15 + 0.85 * severity:
        side = np.sqrt(rng.uniform(0.05, 0.1 + 0.35 * severity))
        h, w = int(side * height), int(side * width)
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        frame[y:y + h, x:x + w] = rng.uniform(0, 255)
    frame = frame + rng.normal(0, 2 + 40 * severity ** 2, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


class FrameEncoder:
    """Ray Data batch class: frame specs (photo path, severity, seed) -> dlib descriptors."""

    def __init__(self, root: str):
        from facelab.faces import FaceEncoder

        self.root, self.encoder = Path(root), FaceEncoder()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        images = []
        for path, severity, seed in zip(batch["photo"], batch["severity"], batch["seed"]):
            grey = np.asarray(Image.open(self.root / str(path)).convert("L"))
            frame = augment(grey, float(severity), np.random.default_rng(int(seed))) if severity >= 0 else grey
            images.append(np.repeat(frame[:, :, None], 3, axis=2))
        return {"key": batch["key"], "descriptor": self.encoder.encode_whole(images, "small")}


def _frame_specs(people: list[str], tracks_per_photo: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per image to encode: references (severity -1: the photo as is) and track frames."""
    rows = []
    for person in people:
        photos = rng.permutation(np.arange(1, PHOTOS + 1))
        for photo in photos[:REFERENCES]:
            rows.append({"person": person, "photo": f"{person}/{photo}.pgm", "track": "", "frame": -1, "severity": -1.0})
        for photo in photos[REFERENCES:]:
            for _ in range(tracks_per_photo):
                track = rng.bytes(16).hex()
                bad = rng.random(FRAMES) < rng.beta(*BAD_SHARE)
                severity = np.where(bad, rng.uniform(0.65, 1.0, FRAMES), rng.uniform(0.0, 0.35, FRAMES))
                rows += [{"person": person, "photo": f"{person}/{photo}.pgm", "track": track, "frame": f,
                          "severity": float(severity[f])} for f in range(FRAMES)]
    specs = pd.DataFrame(rows)
    specs["seed"] = rng.integers(0, 1 << 31, len(specs))
    specs["key"] = np.arange(len(specs))
    return specs


def _encode(root: Path, specs: pd.DataFrame, actors: int | None) -> np.ndarray:
    import ray

    from facelab.predict import cluster_cpus

    actors = actors or min(4, cluster_cpus())  # the cluster's CPUs, not the driver's os.cpu_count()
    columns = specs[["key", "photo", "severity", "seed"]]
    blocks = np.array_split(np.arange(len(columns)), max(1, len(columns) // 200))  # spread over the actors
    encoded = ray.data.from_pandas([columns.iloc[b] for b in blocks]).map_batches(
        FrameEncoder, fn_constructor_kwargs={"root": str(root)}, batch_size=32, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1).to_pandas().sort_values("key")
    return np.stack(encoded["descriptor"].to_numpy()).astype(np.float32)


def _split_data(specs: pd.DataFrame, descriptors: np.ndarray, ids: dict[str, str], val: set[str]) -> dict:
    """One split's tables for `write_layout`, with the source photo as the image path."""
    frames = specs[specs.frame >= 0]
    refs = specs[specs.frame < 0]
    geometry = {c: "" for c in GEOMETRY} | {"bbox_x": 0, "bbox_y": 0, "bbox_w": 92, "bbox_h": 112}
    table = pd.DataFrame({"crop_path": ORL + "/" + frames.photo, "warp_path": ORL + "/" + frames.photo,
                          "person_id": frames.person.map(ids), "video_id": frames.track.str[:16],
                          "track_id": frames.track, "frame_id": frames.frame, **geometry,
                          "is_val": frames.person.isin(val)})
    gt = pd.DataFrame({"crop_path": ORL + "/" + refs.photo, "warp_path": ORL + "/" + refs.photo,
                       "person_id": refs.person.map(ids), "person_img_id": [f"{p}-{i}" for i, p in
                                                                            enumerate(refs.photo)], **geometry})
    order = table.drop_duplicates("track_id")[["track_id", "person_id"]]
    return {"frames": table.reset_index(drop=True), "descriptors": descriptors[frames.index.to_numpy()],
            "order": order.reset_index(drop=True), "gt": gt.reset_index(drop=True),
            "gt_descriptors": l2_normalize(descriptors[refs.index.to_numpy()])}


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, tracks_per_photo: int = 1,
            test_people: int = 16, val_people: int = 5, actors: int | None = None, **_: object) -> dict:
    """Write ORL tracks in the MCS2019 layout into `out`; returns counts."""
    from facelab.cluster import connect

    root = Path(data_root) / ORL
    people = [f"s{i}" for i in range(1, (n or 40) + 1)]
    missing = [p for p in people if not (root / p / "1.pgm").is_file()]
    if missing:
        raise FacelabError(f"{root}: ORL faces not found (missing {', '.join(missing[:3])})")
    if len(people) < test_people + val_people + 2:
        raise FacelabError(f"ORL tracks: {len(people)} people cannot make {test_people} test and "
                           f"{val_people} validation people plus training people")
    rng = np.random.default_rng(seed)
    specs = _frame_specs(people, tracks_per_photo, rng)
    connect(None)
    descriptors = _encode(root, specs, actors)
    order = list(rng.permutation(people))
    test, val = set(order[:test_people]), set(order[test_people:test_people + val_people])
    ids = {p: rng.bytes(16).hex() for p in people}
    parts = {name: specs[specs.person.isin(group)] for name, group in
             (("train", set(people) - test), ("test", test))}
    write_layout(Path(out), _split_data(parts["train"], descriptors, ids, val),
                 _split_data(parts["test"], descriptors, ids, set()), rng)
    tracks = specs[specs.frame >= 0].groupby("person").track.nunique()
    return {"task": "tracks", "out": str(out), "people": {"train": len(people) - len(test), "val": len(val),
                                                          "test": len(test)},
            "tracks": {"train": int(tracks[list(set(people) - test)].sum()), "test": int(tracks[list(test)].sum())},
            "frames": int((specs.frame >= 0).sum()), "references": int((specs.frame < 0).sum()),
            "encoder": "dlib small (5-point), whole image, 128-d"}
