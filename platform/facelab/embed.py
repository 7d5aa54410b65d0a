"""Face embeddings of a folder of images: a Ray Data job (detect -> align -> encode) written to parquet.

    facelab embed --data DIR --out FILE.parquet [--detector hog --min-side 240 --fallback-whole]
    facelab embed --data DIR --out FILE.parquet --min-side 1 --pad 0 --upsample 1 --threshold 0 \
        --encodings small --no-landmarks      # face_recognition's face_locations + face_encodings

Every image under DIR (recursive; .jpg .jpeg .png .pgm .bmp) is read as bytes by Ray Data, decoded,
searched for faces and encoded in a pool of actors (`map_batches`, one detector and encoder each).
Alignment is dlib's: the encoder cuts a 150x150 chip aligned on the face's 5 ("small") or 68
("large") landmarks. One row per face (the `max_faces` best by score, default 1) with columns

    file            path relative to DIR
    face            0 for the best face of the image, 1 for the next ...; -1 when there is none
    box             [x0, y0, x1, y1] in image pixels
    score           the detector's confidence (0 for a whole-image stand-in)
    whole_image     True when nothing was detected and the image itself was taken as the face
    landmarks       5 points (eye centres, nose tip, mouth corners) flattened to [x0, y0, ..., x4, y4]
    landmarks68     dlib's 68 points flattened the same way (136 values)
    encoding        dlib's 128-d face encoding with the 5-point alignment ("small"), float32
    encoding_large  the same network with the 68-point alignment ("large"), float32
    width, height   the image size
    reason          "" for a face found; otherwise why the row has no face or a stand-in:
                    "no face found", "no face found; whole image used", "not a readable image (...)"

By default every face gets both encodings and its 68 points (three 68-point fits and two ResNet
passes); `--encodings small --no-landmarks` computes what `face_recognition.face_encodings` does (one
5-point fit, one ResNet pass: the columns not computed are null), and with `--min-side 1 --pad 0
--upsample 1 --threshold 0` the HOG boxes are `face_recognition.face_locations`' (dlib's detector
upsampled once, score above 0), so the encodings are the same within 1e-5 (bench/face_pipeline.py).

An undecodable file or an image without a face is a row with its reason, never a crash. While it
runs the job shows a progress bar with an ETA on a terminal (a log line every 30 s otherwise) and
flushes finished rows to `<out>.parts/`; rerunning the same command resumes from those parts.

FER-2013 (48x48 greyscale faces, tightly cropped): upsample, then fall back to the whole image.
Share of images with a face found, on 208 PrivateTest images (every other one of 415; each detector with
a 15% black border, `min_side` = the side the image is upsampled to; CPU ms per image on the
loaded 2-core dev machine):

    detector         48 (as is)   96      160     240     320
    hog              0.09         0.89    0.92    0.91    0.91     (7 ms at 160)
    mediapipe        0.95         0.94    0.92    0.91    -        (6 ms)
    mediapipe-full   -            -       -       0.19    -
    haar             0.69         -       0.79    -       -        (29 ms at 160)
    cnn              -            -       0.74    -       -        (307 ms at 160)

dlib's HOG finds almost nothing at FER's own size and 92% once upsampled to 160 px. Since every FER
image IS a face, the sentiment converter uses HOG at 160 px (dlib's landmark model was trained on
HOG's boxes, so its 68 points and both encodings are best on them) and takes the whole image as
the face for the other ~8% (`fallback_whole=True`, reason "no face found; whole image used"): no
image is lost, and whole-image rows can be told apart in the output.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from facelab.atomic import replacing
from facelab.errors import FacelabError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")
NO_FACE = "no face found"
WHOLE_IMAGE = "no face found; whole image used"

ENCODINGS = ("both", "small", "large")
FLOATS = pa.list_(pa.float32())
SCHEMA = pa.schema([
    ("file", pa.string()), ("face", pa.int16()), ("box", FLOATS), ("score", pa.float32()),
    ("whole_image", pa.bool_()), ("landmarks", FLOATS), ("landmarks68", FLOATS), ("encoding", FLOATS),
    ("encoding_large", FLOATS), ("width", pa.int32()), ("height", pa.int32()), ("reason", pa.string()),
])


@dataclass
class EmbedOptions:
    """How faces are found: detector name and options (see facelab.faces.get_detector)."""

    detector: str = "hog"
    min_side: int = 240
    pad: float = 0.15
    threshold: float | None = None
    fallback_whole: bool = False
    max_faces: int = 1
    upsample: int = 0  # dlib's pyramid upsampling inside the detector (hog, cnn)
    encodings: str = "both"  # "both" (encoding and encoding_large), "small" or "large"
    landmarks: bool = True  # the 5 and 68 landmark columns (a 68-point fit per face)

    def __post_init__(self):
        if self.encodings not in ENCODINGS:
            raise FacelabError(f"embed encodings '{self.encodings}' is not one of {', '.join(ENCODINGS)}")

    def detector_options(self) -> dict:
        return {"min_side": self.min_side, "pad": self.pad, "threshold": self.threshold,
                "fallback_whole": self.fallback_whole, "upsample": self.upsample, "landmarks": self.landmarks}


# How the FairFace-style data's embeddings are made from UTKFace photos (the converter), and how a
# served image is embedded to match them (the fairface task).
UTK_OPTIONS = EmbedOptions(detector="hog", min_side=240, pad=0.15)


def list_images(root: Path) -> list[str]:
    """Image files under `root`, recursively, as sorted paths relative to it."""
    root = Path(root)
    if not root.is_dir():
        raise FacelabError(f"{root}: image folder not found")
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def _flat(points) -> list[float]:
    return np.asarray(points, np.float32).ravel().tolist()


class FaceEmbedder:
    """Batch class for `map_batches`: rows `file` + `bytes` (or `path`, read here) in, one row per face
    (SCHEMA) out."""

    def __init__(self, options: dict | None = None):
        from facelab.faces import FaceEncoder, get_detector

        self.options = EmbedOptions(**(options or {}))
        self.detect = get_detector(self.options.detector, **self.options.detector_options())
        self.encoder = FaceEncoder()

    def rows(self, file: str, data: bytes) -> list[dict]:
        """The face rows of one image file (a reason row when it has none or is unreadable)."""
        from facelab.faces import dlib_points
        from facelab.uploads import UploadError, decode_image

        empty = {"file": file, "face": -1, "box": None, "score": None, "whole_image": False, "landmarks": None,
                 "landmarks68": None, "encoding": None, "encoding_large": None, "width": None, "height": None}
        try:
            image = decode_image(data, field=file, max_bytes=64 * 1024 * 1024)
        except UploadError as exc:
            return [{**empty, "reason": exc.reason}]
        height, width = image.shape[:2]
        faces = self.detect(image)[: self.options.max_faces]
        if not faces:
            return [{**empty, "width": width, "height": height, "reason": NO_FACE}]
        wanted = self.options.encodings
        codes = self.encoder.encode(image, [f.box for f in faces], model="mean" if wanted == "both" else wanted)
        marks = self.options.landmarks
        return [{"file": file, "face": i, "box": _flat(f.box), "score": f.score, "whole_image": f.whole_image,
                 "landmarks": _flat(f.landmarks) if marks else None,
                 "landmarks68": _flat(dlib_points(image, f.box, 68)) if marks else None,
                 "encoding": codes["small"][i].tolist() if "small" in codes else None,
                 "encoding_large": codes["large"][i].tolist() if "large" in codes else None,
                 "width": width, "height": height, "reason": WHOLE_IMAGE if f.whole_image else ""}
                for i, f in enumerate(faces)]

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        contents = batch["bytes"] if "bytes" in batch else [_read(path) for path in batch["path"]]
        rows = [row for file, data in zip(batch["file"], contents) for row in self.rows(str(file), bytes(data))]
        return pa.Table.from_pylist(rows, schema=SCHEMA)


def _read(path: str) -> bytes:
    """The file's bytes; none when it cannot be read (its row then says why the image is unreadable)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


class _Progress:
    """A tqdm bar with ETA on a terminal; otherwise a log line with rate and ETA every `every` s."""

    def __init__(self, total: int, desc: str, every: float = 30.0):
        from tqdm.auto import tqdm

        self.total, self.desc, self.every, self.done = total, desc, every, 0
        self.started = self.last = time.monotonic()
        self.bar = tqdm(total=total, desc=desc, unit="img") if sys.stderr.isatty() else None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.desc}: {self.done}/{self.total} images ({self.done / max(self.total, 1):.1%}), "
                  f"{rate:.1f} img/s, ETA {time.strftime('%H:%M:%S', time.gmtime(eta)) if eta < 1e7 else '?'}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write_part(table, path: Path) -> None:
    """A part appears whole or not at all (a killed job leaves a hidden temporary, which no glob sees)."""
    import pyarrow.parquet as pq

    with replacing(path) as tmp:
        pq.write_table(table, tmp)


def _done_files(parts: Path) -> set[str]:
    import pyarrow.parquet as pq

    return {f for p in sorted(parts.glob("part-*.parquet")) for f in pq.read_table(p, columns=["file"])["file"].to_pylist()}


OPTIONS_KEY = b"facelab.embed.options"


# options added later, stamped only when not at their default (so earlier files and parts still match)
LATER_OPTIONS = {"upsample": 0, "encodings": "both", "landmarks": True}


def _options_text(options: EmbedOptions) -> str:
    import json

    stamped = {k: v for k, v in asdict(options).items() if k not in LATER_OPTIONS or v != LATER_OPTIONS[k]}
    return json.dumps(stamped, sort_keys=True)


def _parts_folder(out: Path, options: EmbedOptions) -> Path:
    """`<out>.parts/`, where finished rows wait; resuming with other options would mix two runs."""
    parts = Path(f"{out}.parts")
    parts.mkdir(parents=True, exist_ok=True)
    stamp, wanted = parts / "options.json", _options_text(options)
    if stamp.is_file() and stamp.read_text() != wanted:
        raise FacelabError(f"{parts} holds an unfinished run with other options ({stamp.read_text()}); "
                           "delete it or rerun with those options")
    stamp.write_text(wanted)
    return parts


def _existing(out: Path, options: EmbedOptions) -> pa.Table:
    """The rows already in `out` (made with the same options), reused instead of recomputed."""
    import pyarrow.parquet as pq

    if not out.is_file():
        return SCHEMA.empty_table()
    table = pq.read_table(out)
    made_with = (table.schema.metadata or {}).get(OPTIONS_KEY, b"").decode()
    if made_with != _options_text(options):
        raise FacelabError(f"{out} exists and was made with other options ({made_with or 'unknown'}); "
                           "write to another file or delete it")
    return table.cast(SCHEMA)


def _compute(root: Path, todo: list[str], options: EmbedOptions, parts: Path, *, actors: int | None,
             batch_size: int, flush_rows: int) -> None:
    """Embed `todo` in an actor pool, flushing finished rows to `parts` as they stream back."""
    import ray

    from facelab.cluster import connect

    connect(None)  # joins the cluster a job already connected to, else starts a local Ray
    actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # The actors read the files themselves: read tasks of their own (read_binary_files) started a worker
    # process each, and on 2 CPUs those start-ups held the actors back for most of a short job
    # (bench/face_pipeline.py: 1.00x on 2 CPUs). One block per batch.
    dataset = ray.data.from_items([{"file": n, "path": str(root / n)} for n in todo],
                                  override_num_blocks=max(1, -(-len(todo) // batch_size)))
    embedded = dataset.map_batches(
        FaceEmbedder, fn_constructor_kwargs={"options": asdict(options)}, batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
    bar, pending, part = _Progress(len(todo), f"embed {root.name}"), [], len(list(parts.glob("part-*.parquet")))
    for table in embedded.iter_batches(batch_size=None, batch_format="pyarrow"):
        pending.append(table)
        bar.update(len(set(table["file"].to_pylist())))
        if sum(t.num_rows for t in pending) >= flush_rows:
            _write_part(pa.concat_tables(pending), parts / f"part-{part:05d}.parquet")
            pending, part = [], part + 1
    if pending:
        _write_part(pa.concat_tables(pending), parts / f"part-{part:05d}.parquet")
    bar.close()


def embed_folder(root: Path, out: Path, options: EmbedOptions | None = None, *, actors: int | None = None,
                 batch_size: int = 16, limit: int | None = None, files: list[str] | None = None,
                 flush_rows: int = 500) -> dict:
    """Embed the images under `root` (all, the first `limit`, or the relative paths `files`) into `out`.

    Files already in `out` (same options) or in an unfinished `<out>.parts/` are not recomputed, and
    `out` keeps them: it works as a cache that grows. Returns a summary of the requested files:
    images, faces, images per reason, seconds and milliseconds per computed image.
    """
    import pyarrow.parquet as pq

    options = options or EmbedOptions()
    root, out = Path(root).resolve(), Path(out)
    names = files if files is not None else list_images(root)
    names = names[:limit] if limit else names
    cached = _existing(out, options)
    parts = _parts_folder(out, options)
    done = set(cached["file"].to_pylist()) | _done_files(parts)
    todo = [n for n in names if n not in done]
    started = time.monotonic()
    if todo:
        _compute(root, todo, options, parts, actors=actors, batch_size=batch_size, flush_rows=flush_rows)
    seconds = time.monotonic() - started
    table = pa.concat_tables([cached, *(pq.read_table(p, schema=SCHEMA) for p in sorted(parts.glob("part-*.parquet")))])
    table = table.sort_by([("file", "ascending"), ("face", "ascending")])
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        pq.write_table(table.replace_schema_metadata({OPTIONS_KEY: _options_text(options).encode()}), tmp)
    shutil.rmtree(parts)
    wanted = pa.array(np.isin(table["file"].to_numpy(zero_copy_only=False), names))
    return summarize(table.filter(wanted), seconds=seconds, computed=len(todo)) | {"out": str(out), "options": asdict(options)}


def summarize(table: pa.Table, *, seconds: float | None = None, computed: int | None = None) -> dict:
    """Counts of an embeddings table: images, faces, and images per reason."""
    frame = table.select(["file", "face", "reason"]).to_pandas()
    first = frame.drop_duplicates("file")
    out = {"images": len(first), "faces": int((frame["face"] >= 0).sum()),
           "reasons": {(r or "face found"): int(c) for r, c in first["reason"].value_counts().items()}}
    if seconds is not None:
        out["seconds"] = round(seconds, 1)
        out["ms_per_image"] = round(1000 * seconds / computed, 1) if computed else None
    return out
