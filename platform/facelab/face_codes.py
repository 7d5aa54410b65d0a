"""Face codes: the main face of an image, detected and encoded by both dlib models.

    coder = FaceCoder(CoderSettings("hog"))
    code = coder(image)                      # FaceCode: small/large [128], the face, whole_image
    codes = encode_files(paths, settings)    # many files, a Ray Data actor pool, cached on disk

`encode_files` hashes each file's bytes and keeps the codes per encoder setting in
`<cache>/face_codes/<setting>.npz` (cache: `$FACELAB_CACHE`, else `~/.cache/facelab`), so an image
is encoded once per setting however many pairs, trials, runs or galleries use it. When no face is
found the whole image stands in (`whole_image` is set): callers decide whether that counts.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.faces import Face, FaceEncoder, get_detector

DIM = 128


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where face codes are cached: argument, else $FACELAB_CACHE, else ~/.cache/facelab."""
    return Path(override or os.environ.get("FACELAB_CACHE") or Path.home() / ".cache" / "facelab")


@dataclass(frozen=True)
class CoderSettings:
    """How faces are found and encoded. `jitters`: dlib's re-encodings of randomly perturbed
    crops, averaged (slower by that factor). `upsample`: the image is scaled by this before
    landmarks and encoding (small faces such as ORL's 92x112 get finer landmarks)."""

    detector: str = "hog"
    jitters: int = 0
    upsample: float = 1.0

    @property
    def key(self) -> str:
        return f"{self.detector}-j{self.jitters}-u{self.upsample:g}"

    @classmethod
    def from_config(cls, config: dict) -> CoderSettings:
        """The settings of a verify config or stored verify model (facelab.tasks.verify.VerifyConfig's keys)."""
        return cls(str(config["detector"]), int(config["jitters"]), float(config["upsample"]))


def main_face(faces: list[Face]) -> Face | None:
    """The largest face (the subject of a portrait), or None."""
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


@dataclass
class FaceCode:
    small: np.ndarray  # [128] float32
    large: np.ndarray  # [128] float32
    face: Face  # in the original image's pixels
    whole_image: bool  # no face was found; the whole image was encoded

    def as_codes(self) -> dict[str, np.ndarray]:
        """{"small": [1, 128], "large": [1, 128]}: what `facelab.faces.distances` takes."""
        return {"small": self.small[None], "large": self.large[None]}


class FaceCoder:
    """Detects the main face of an RGB (or grey) image and encodes it with both dlib models."""

    def __init__(self, settings: CoderSettings = CoderSettings()):
        self.settings = settings
        self.detector = get_detector(settings.detector, fallback_whole=True)
        self.encoder = FaceEncoder(jitters=settings.jitters)

    def __call__(self, image: np.ndarray) -> FaceCode:
        image = np.asarray(image)
        face = main_face(self.detector(image))
        scale = self.settings.upsample
        big = image if scale == 1 else _scaled(image, scale)
        codes = self.encoder.encode(big, [tuple(v * scale for v in face.box)], "mean")
        return FaceCode(codes["small"][0], codes["large"][0], face, face.whole_image)


def _scaled(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


class EncodeFiles:
    """Ray Data actor: a batch of `path` rows -> their face codes (one FaceCoder per actor)."""

    def __init__(self, detector: str, jitters: int, upsample: float):
        self.coder = FaceCoder(CoderSettings(detector, jitters, upsample))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from facelab.formats.images import load_rgb

        codes = [self.coder(load_rgb(path)) for path in batch["path"]]
        return {"sha": batch["sha"], "small": np.stack([c.small for c in codes]),
                "large": np.stack([c.large for c in codes]), "whole": np.array([c.whole_image for c in codes])}


@dataclass
class FileCodes:
    """Codes of a list of files, row i for file i."""

    small: np.ndarray  # [n, 128]
    large: np.ndarray  # [n, 128]
    whole: np.ndarray  # [n] bool: no face found in that file
    encoded: int = 0  # how many were encoded now (the rest came from the cache)

    def codes(self, rows=slice(None)) -> dict[str, np.ndarray]:
        return {"small": self.small[rows], "large": self.large[rows]}


def file_sha(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cache_file(settings: CoderSettings, cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "face_codes" / f"{settings.key}.npz"


def cached_codes(settings: CoderSettings, cache: str | os.PathLike | None = None) -> dict[str, tuple]:
    """Every cached code of a setting: file sha256 -> (small [128], large [128], whole_image)."""
    return _load_cache(_cache_file(settings, cache))


def _load_cache(path: Path) -> dict[str, tuple]:
    if not path.is_file():
        return {}
    with np.load(path) as saved:
        return {sha: (s, l, w) for sha, s, l, w in zip(saved["sha"], saved["small"], saved["large"], saved["whole"])}


def _save_cache(path: Path, cache: dict[str, tuple]) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shas = sorted(cache)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as fh:
        np.savez(fh, sha=np.array(shas), small=np.stack([cache[s][0] for s in shas]),
                 large=np.stack([cache[s][1] for s in shas]), whole=np.array([cache[s][2] for s in shas]))
    os.replace(fh.name, path)


def encode_files(paths: list[str], settings: CoderSettings, *, cache: str | os.PathLike | None = None,
                 actors: int | None = None, batch_size: int = 8) -> FileCodes:
    """Codes of every file, each distinct image encoded at most once per setting: the ones not
    in the cache go through `map_batches` on a pool of `actors` EncodeFiles actors."""
    import ray

    shas = [file_sha(p) for p in paths]
    cache_file = _cache_file(settings, cache)
    known = _load_cache(cache_file)
    todo = {sha: str(path) for sha, path in zip(shas, paths) if sha not in known}
    if todo:
        actors = actors or int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(actors, -(-len(todo) // batch_size)))  # no idle actors on a small job
        rows = ray.data.from_items([{"sha": sha, "path": path} for sha, path in todo.items()])
        done = rows.map_batches(EncodeFiles, fn_constructor_kwargs={"detector": settings.detector, "jitters": settings.jitters,
                                                                    "upsample": settings.upsample},
                                batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1).take_all()
        for row in done:
            known[str(row["sha"])] = (row["small"], row["large"], bool(row["whole"]))
        _save_cache(cache_file, known)

    def column(i: int) -> np.ndarray:
        return np.stack([known[s][i] for s in shas]).astype(np.float32) if shas else np.zeros((0, DIM), np.float32)

    return FileCodes(column(0), column(1), np.array([known[s][2] for s in shas], bool), encoded=len(todo))
