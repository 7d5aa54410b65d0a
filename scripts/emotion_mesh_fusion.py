"""Late fusion of an emotion CNN with mediapipe's face-mesh geometry, measured with its ablations
(issue 23, part 2).

    .venv/bin/python scripts/emotion_mesh_fusion.py --store S --run RUN_ID --data ../shared/data/fer2013 --out OUT

The fused model is what `facelab fuse-mesh` stores (facelab.fusion.MeshFusion: a LightGBM mesh
expert on FER's Training faces, a logistic head over both experts' log-probabilities fitted on
PublicTest). Scored on the PrivateTest sample (`test/`) with the emotion format's metrics, against
the CNN alone, the same kind of head over the CNN alone (so a gain from re-calibration is not
credited to the mesh) and the mesh expert alone. Writes OUT/fusion.json and OUT/confusion_matrix.png
(fused).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def split_rows(data: Path) -> dict[str, pd.DataFrame]:
    """labels.csv's rows by Usage, only those whose image is in the folder (test/ is a sample)."""
    labels = pd.read_csv(data / "labels.csv")
    labels = labels[[(data / f).is_file() for f in labels["file"]]]
    return {usage: rows.reset_index(drop=True) for usage, rows in labels.groupby("Usage")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", default="promoted", help="emotion run id (default: the promoted one)")
    parser.add_argument("--data", type=Path, required=True, help="FER-2013 folder (labels.csv, train/, validation/, test/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray

    from facelab import plots
    from facelab.formats.fer import EMOTIONS, emotion_metrics
    from facelab.fusion import EPS, MESH_SIDE, MeshFusion, MeshGeometry, class_probabilities, map_paths, stacking_head
    from facelab.store import ModelStore

    store = ModelStore(args.store)
    run_id = store.promoted("emotion") if args.run == "promoted" else args.run
    run = store.load("emotion", run_id)
    data, out = args.data.resolve(), args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = split_rows(data)
    train, val, test = rows["Training"], rows["PublicTest"], rows["PrivateTest"]
    seconds: dict[str, float] = {}
    ray.init(ignore_reinit_error=True)

    start = time.time()
    mesh = {name: map_paths([str(data / f) for f in split["file"]], MeshGeometry, {})["geometry"].astype(np.float32)
            for name, split in (("train", train), ("val", val), ("test", test))}
    seconds["mesh"] = time.time() - start
    found = {name: float(np.isfinite(x[:, 0]).mean()) for name, x in mesh.items()}
    print(f"mesh found: {found} ({seconds['mesh']:.0f} s)", flush=True)

    start = time.time()
    cnn = {name: class_probabilities("emotion", run.model_dir, [str(data / f) for f in split["file"]])
           for name, split in (("val", val), ("test", test))}
    seconds["cnn"] = time.time() - start

    start = time.time()
    y = {name: split["emotion_name"].map(EMOTIONS.index).to_numpy() for name, split in
         (("train", train), ("val", val), ("test", test))}
    fusion = MeshFusion.fit(mesh["train"], y["train"], cnn["val"], mesh["val"], y["val"], seed=args.seed)
    recalibrated = stacking_head(np.log(cnn["val"] + EPS), y["val"], args.seed)
    seconds["fit"] = time.time() - start

    predictions = {
        "cnn": cnn["test"].argmax(1),
        "cnn_recalibrated": recalibrated.predict(np.log(cnn["test"] + EPS)),
        "mesh": fusion.expert_probs(mesh["test"]).argmax(1),
        "cnn_and_mesh": fusion.predict_proba(cnn["test"], mesh["test"]).argmax(1),
    }
    names = np.array(EMOTIONS)
    truth = names[y["test"]]
    results = {model: emotion_metrics(truth, names[p], train["emotion_name"]) for model, p in predictions.items()}
    record = {"emotion_run": run.run_id, "data": str(data), "rows": {k: len(v) for k, v in rows.items()},
              "mesh_found": found, "mesh_side": MESH_SIDE, "fusion": fusion.info,
              "seconds": {k: round(v, 1) for k, v in seconds.items()}, "test": results}
    (out / "fusion.json").write_text(json.dumps(record, indent=2))
    plots.confusion_matrix_png(truth, names[predictions["cnn_and_mesh"]], EMOTIONS, out / "confusion_matrix.png",
                               title=f"emotion CNN {run.run_id} + mesh (PrivateTest sample)")
    print(f"{'test (PrivateTest sample)':28s} {'accuracy':>9s} {'macro-F1':>9s} {'at FER prior':>13s}")
    for model, scores in results.items():
        print(f"{model:28s} {scores['accuracy']:9.3f} {scores['f1_macro']:9.3f} {scores['accuracy_at_train_prior']:13.3f}")
    print(f"seconds: {record['seconds']}; written {out / 'fusion.json'}")


if __name__ == "__main__":
    main()
