"""The Kaggle face-mask VOC set in the mask layout, several faces per image (`facelab data convert --task mask-voc`).

`facemask_voc/images/<name>.png` with `annotations/<name>.xml` (one `<object>` per face: `<name>`
with_mask / without_mask / mask_weared_incorrect and `<bndbox>` in pixels) become
`<split>/<name>.jpg` (RGB JPEG) and `<split>.csv` rows `ImageID,bbox,masktype` -- one row per
face, the Blitz columns and bbox text -- plus `labels.json`, the label set, which tells the mask
task to read the multi-face variant. Boxes are clipped to the image; a box empty after clipping is
dropped and counted. Seeded split of the images: 5 train to 2 val (no test: there are 140 images,
val is for early stopping and scoring). `sources.csv` maps every ImageID to its files.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facelab.errors import FacelabError
from facelab.formats.images import ID, save_jpeg
from facelab.formats.mask import format_bbox
from facelab.progress import progress

SOURCE = "facemask_voc"
LABELS = ("with_mask", "without_mask", "mask_weared_incorrect")
VAL_SHARE = 2 / 7


def read_voc(xml: Path) -> list[tuple[str, list[float]]]:
    """(label, [xmin, ymin, xmax, ymax]) of every object of one VOC annotation."""
    try:
        root = ET.parse(xml).getroot()
        return [(obj.findtext("name", "").strip(),
                 [float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
                for obj in root.iter("object")]
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise FacelabError(f"{xml}: not a readable VOC annotation ({exc})") from None


def convert(data_root: Path, out: Path, *, seed: int = 0, n: int | None = None, **_) -> dict:
    source = Path(data_root) / SOURCE
    pairs = [(p, source / "annotations" / f"{p.stem}.xml") for p in sorted((source / "images").glob("*.png"))]
    pairs = [(image, xml) for image, xml in pairs if xml.is_file()]
    if not pairs:
        raise FacelabError(f"{source}: no images/<name>.png with annotations/<name>.xml")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))[: n or len(pairs)]
    n_val = max(1, round(len(order) * VAL_SHARE))
    out = Path(out)
    rows, dropped, unknown = [], 0, 0
    for rank, i in enumerate(progress(order, "mask-voc images")):
        image_path, xml = pairs[i]
        split = "val" if rank < n_val else "train"
        with Image.open(image_path) as im:
            image = im.convert("RGB")
        width, height = image.size
        save_jpeg(image, out / split / f"{image_path.stem}.jpg")
        for label, (x0, y0, x1, y1) in read_voc(xml):
            if label not in LABELS:
                unknown += 1
                continue
            box = np.round([max(0, x0), max(0, y0), min(width, x1), min(height, y1)])
            if box[2] <= box[0] or box[3] <= box[1]:
                dropped += 1
                continue
            rows.append((split, image_path.stem, format_bbox(box), label, f"{SOURCE}/images/{image_path.name}"))
    frame = pd.DataFrame(rows, columns=["split", ID, "bbox", "masktype", "source"])
    for split in ("train", "val"):
        frame.loc[frame["split"] == split, [ID, "bbox", "masktype"]].to_csv(out / f"{split}.csv", index=False)
    (out / "labels.json").write_text(json.dumps(list(LABELS)))
    frame.drop_duplicates(ID)[[ID, "split", "source"]].to_csv(out / "sources.csv", index=False)
    return {"task": "mask", "layout": "multi-face (labels.json)", "out": str(out), "images": len(order),
            "train": len(order) - n_val, "val": n_val, "faces": len(frame),
            "per_label": frame["masktype"].value_counts().to_dict(), "boxes_dropped_empty": dropped,
            "objects_with_unknown_label": unknown}
