"""scripts/pack_gpu_data.py and scripts/gpu_runs.py on CPU: a small pack round-trips byte for byte,
and `gpu_runs.py --tiny` trains both default configs for one epoch from that pack, without Ray
(as on the GPU machine), and scores the test splits as `facelab score` does."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
# run the script as on the GPU machine: `import ray` fails (a None entry in sys.modules)
WITHOUT_RAY = ("import runpy, sys; sys.modules['ray'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")


def test_pack_round_trips(data_root, tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    try:
        from pack_gpu_data import pack, unpack
    finally:
        sys.path.remove(str(SCRIPTS))
    info = pack(data_root / "fer2013", tmp_path / "fer2013.npz", subset=40)
    assert info["images"] == 40 and info["prefix_bytes"] > 100  # the shared JPEG headers are stored once
    folder = unpack(tmp_path / "fer2013.npz", tmp_path / "out")
    labels = pd.read_csv(folder / "labels.csv", dtype=str)
    assert set(labels["Usage"]) == {"Training", "PublicTest", "PrivateTest"}
    for file in labels["file"]:
        assert (folder / file).read_bytes() == (data_root / "fer2013" / file).read_bytes()
    # a subset of a pack keeps labels.csv and the images in step
    few = unpack(tmp_path / "fer2013.npz", tmp_path / "few", subset=10)
    files = pd.read_csv(few / "labels.csv")["file"]
    assert 5 <= len(files) < 40 and all((few / f).is_file() for f in files)
    assert len(list(few.rglob("*.jpg"))) == len(files)


def test_tiny_runs_without_ray(data_root, tmp_path):
    packs = tmp_path / "packs"
    subprocess.run([sys.executable, str(SCRIPTS / "pack_gpu_data.py"), "--data", str(data_root), "--out", str(packs),
                    "--subset", "120"], check=True, capture_output=True)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", WITHOUT_RAY, str(SCRIPTS / "gpu_runs.py"), "--data", str(packs),
                           "--out", str(out), "--tiny", "--workers", "2", "--work", str(tmp_path / "work"),
                           # a budget already spent: each task stops after its first epoch, keeping it
                           "--epochs", "2", "--time-budget-s", "1"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["ray"] == "not installed"
    emotion, age = report["tasks"]["emotion"], report["tasks"]["age-gender"]
    # the default configs, stopped by the time budget after one of their two epochs
    assert emotion["config"]["base"] == 64 and emotion["config"]["fc"] == 1024
    assert age["config"]["image_size"] == 112 and age["config"]["width"] == 64
    for run in (emotion, age):
        assert run["epochs_run"] == run["best_epoch"] == 1 and run["stop"] == "time budget"
    assert {"accuracy", "f1_macro", "accuracy_at_train_prior"} <= set(emotion["test"])
    assert 0 <= emotion["test"]["accuracy"] <= 1 and emotion["test"]["n"] == emotion["rows"]["test"]
    assert {"age_mae", "gender_accuracy", "race_accuracy", "gender_accuracy_under_10"} <= set(age["test"])
    assert age["test"]["age_mae"] > 0 and age["test"]["n"] == age["rows"]["test"]
    # the scores are the format's, recomputed from the submission the script wrote
    sub = pd.read_csv(out / "emotion_submission.csv")
    truth = pd.read_csv(tmp_path / "work" / "fer2013" / "labels.csv").query("Usage == 'PrivateTest'")
    joined = truth.merge(sub, on="file", suffixes=("", "_pred"))
    assert len(joined) == len(truth)
    assert np.isclose((joined["emotion_name"] == joined["emotion_name_pred"]).mean(), emotion["test"]["accuracy"])
    history = pd.read_csv(out / "age_gender_history.csv")
    assert list(history["epoch"]) == [1] and np.isfinite(history["age_mae"]).all()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.json", *(f"{t}_{kind}" for t in ("emotion", "age_gender")
                           for kind in ("history.csv", "history.png", "submission.csv"))])
