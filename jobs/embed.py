"""`facelab embed` / `python -m jobs.embed`: face embeddings of an image folder, a Ray Data job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cluster import connect
from facelab.faces import DETECTORS
from jobs.common import Address, command, emit, path_option


@command
def embed(
    data: Annotated[Path, path_option("--data", help="folder of images (searched recursively: jpg, png, pgm, bmp)")],
    out: Annotated[Path, path_option("--out", help="parquet file to write (file, box, landmarks, encoding, ..., reason)")],
    detector: Annotated[str, typer.Option("--detector", help=f"face detector: {', '.join(DETECTORS)}")] = "hog",
    min_side: Annotated[int, typer.Option("--min-side", min=1, help="upsample smaller images to this side first")] = 240,
    pad: Annotated[float, typer.Option("--pad", min=0.0, help="black border, a fraction of the image, for tight crops")] = 0.15,
    fallback_whole: Annotated[bool, typer.Option("--fallback-whole/--no-fallback", help="take the whole image as the face when none is found (face crops such as FER)")] = False,
    max_faces: Annotated[int, typer.Option("--max-faces", min=1, help="faces kept per image, best first")] = 1,
    upsample: Annotated[int, typer.Option("--upsample", min=0, help="dlib's pyramid upsampling in the hog/cnn detector (face_recognition's number_of_times_to_upsample)")] = 0,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="drop faces the detector scores below this")] = None,
    encodings: Annotated[str, typer.Option("--encodings", help="both (encoding and encoding_large), small or large")] = "both",
    landmarks: Annotated[bool, typer.Option("--landmarks/--no-landmarks", help="the 5 and 68 landmark columns (one 68-point fit per face)")] = True,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="only the first N images (sorted by path)")] = None,
    actors: Annotated[Optional[int], typer.Option("--actors", min=1, help="detector/encoder actors (default: one per CPU)")] = None,
    address: Address = None,
) -> None:
    """Detect, align and encode the faces of every image under DATA into one parquet file."""
    from facelab.embed import EmbedOptions, embed_folder

    options = EmbedOptions(detector=detector, min_side=min_side, pad=pad, fallback_whole=fallback_whole,
                           max_faces=max_faces, upsample=upsample, threshold=threshold, encodings=encodings,
                           landmarks=landmarks)
    connect(address)
    emit(embed_folder(data, out, options, actors=actors, limit=limit))


if __name__ == "__main__":
    typer.run(embed)
