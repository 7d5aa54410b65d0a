"""The detect task: AP by hand, detectors on cartoon and real faces, fit -> submit -> score, serve rows."""

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facelab import metrics
from facelab.errors import FacelabError
from facelab.formats import get_format
from facelab.formats.detect import truth_boxes, voc_items
from facelab.formats.images import load_rgb
from facelab.store import ModelStore
from facelab.tasks import get_task
from facelab.tasks.detect import DetectPredictor, detector_from, evaluate
from facelab.uploads import UploadError

TASK = get_task("detect")


def test_face_detection_hand_worked():
    """Image a: truths A1, A2; image b: truth B1; image c: no face.
    Ranked: a/A1 0.9 TP, c/xx 0.8 FP, a/A1-duplicate 0.7 FP (A1 taken), b/B1 0.6 TP, a/miss 0.5 FP.
    precision 1, 1/2, 1/3, 2/4, 2/5 at recall 1/3, 1/3, 1/3, 2/3, 2/3: envelope 1 up to 1/3, 1/2 to 2/3,
    so AP = 1/3 * 1 + 1/3 * 1/2 = 0.5; F1 is 0.5 at the first box and best at the fourth (score 0.6):
    2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7."""
    truth = {"a": [[0, 0, 10, 10], [20, 0, 30, 10]], "b": [[0, 0, 10, 10]], "c": []}
    pred = [("a", [0, 0, 10, 11], 0.9), ("c", [0, 0, 5, 5], 0.8), ("a", [0, 0, 10, 10], 0.7),
            ("b", [1, 1, 10, 10], 0.6), ("a", [50, 50, 60, 60], 0.5)]
    out = metrics.face_detection(truth, pred, truth_labels={"a": ["m", "n"], "b": ["m"], "c": []})
    assert out["ap50"] == pytest.approx(0.5)
    assert out["precision"] == pytest.approx(2 / 5) and out["recall"] == pytest.approx(2 / 3)
    assert out["best_f1"] == pytest.approx(4 / 7) and out["best_threshold"] == 0.6
    assert out["recall_m"] == 1.0 and out["recall_n"] == 0.0 and out["n_truth"] == 3
    with pytest.raises(ValueError, match="not in the truth"):
        metrics.face_detection(truth, [("zz", [0, 0, 1, 1], 0.1)])


@pytest.fixture(scope="module")
def cartoons(tmp_path_factory):
    return get_format("detect").synthesize(tmp_path_factory.mktemp("voc") / "data", n=8, seed=2)


def test_a_working_detector_finds_cartoon_faces_and_a_broken_one_fails(cartoons, monkeypatch):
    items = voc_items(cartoons / "val")
    good = evaluate({"model": "mediapipe", "min_side": 160, "pad": 0.0}, items)
    assert good["ap50"] > 0.6 and good["recall"] > 0.6
    from facelab.faces import detect

    monkeypatch.setattr(detect.MediapipeDetector, "_find", lambda self, image: [((0, 0, 20, 20), 0.9)])
    broken = evaluate({"model": "mediapipe", "min_side": 160, "pad": 0.0}, items)
    assert broken["ap50"] < 0.1


def test_unknown_detector_is_an_error():
    with pytest.raises(FacelabError, match="unknown face detector"):
        detector_from({"model": "nope"})


@pytest.mark.realdata
def test_default_detector_on_real_faces(data_root):
    """The configured default finds the annotated faces of every real face-mask photo (recall 0.90
    measured by `facelab detect-bench`) and the one face of an ORL portrait; its 5 landmarks lie
    inside the box."""
    detect = detector_from(TASK.default_config)
    items = voc_items(data_root / "facemask_voc")
    hits = total = 0
    for path, boxes in zip(items["path"], items["boxes"]):
        faces = detect(load_rgb(path))
        for box in json.loads(boxes):
            total += 1
            hits += any(metrics.iou(f.box, box) >= 0.5 for f in faces)
        for f in faces:
            x0, y0, x1, y1 = f.box
            assert ((f.landmarks[:, 0] >= x0 - 2) & (f.landmarks[:, 0] <= x1 + 2)).mean() >= 0.8
    assert total > 150 and hits / total >= 0.85
    portrait = load_rgb(data_root / "orl_faces" / "s1" / "1.pgm")
    assert len(detector_from({**TASK.default_config, "min_side": 160, "pad": 0.15})(portrait)) >= 1


@pytest.mark.realdata
def test_fit_submit_score_on_a_tiny_real_voc(data_root, tmp_path, ray_local):
    from facelab.predict import submit
    from facelab.train import train

    voc = tmp_path / "voc"
    source = data_root / "facemask_voc"
    for name in sorted(p.stem for p in (source / "annotations").glob("*.xml"))[:5]:
        for sub, suffix in (("images", ".png"), ("annotations", ".xml")):
            (voc / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(source / sub / f"{name}{suffix}", voc / sub)
    store = str(tmp_path / "store")
    run_id, fitted = train("detect", voc, store, promote=True)
    chosen = json.loads((ModelStore(store).load("detect").model_dir / "detector.json").read_text())
    assert chosen["model"] == TASK.default_config["model"] and chosen["threshold"] is not None
    result = submit("detect", voc, tmp_path / "detections.csv", store)
    assert result["rows"] == 5
    scored = get_format("detect").score(tmp_path / "detections.csv", voc)
    assert scored["n_images"] == 5 and scored["ap50"] > 0.5
    # a flat folder is both splits: the submitted boxes are the fit's, cut at its best-F1 threshold
    assert scored["f1"] == pytest.approx(fitted["best_f1"], abs=0.05) and scored["recall"] <= fitted["recall"] + 1e-9


def _b64(image: np.ndarray) -> str:
    from facelab.uploads import encode_png

    return base64.b64encode(encode_png(image)).decode()


def test_request_rows_and_response(cartoons, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "detector.json").write_text(json.dumps({"model": "mediapipe", "min_side": 160, "pad": 0.0,
                                                         "threshold": 0.3}))
    image = next(iter((cartoons / "test" / "images").iterdir()))
    request = TASK.Request(images=[base64.b64encode(image.read_bytes()).decode(), _b64(np.zeros((60, 80, 3), np.uint8))])
    rows, batched = TASK.request_rows(request)
    assert batched and rows[0]["image"].shape == (240, 320, 3)
    images = np.empty(2, dtype=object)
    images[:] = [r["image"] for r in rows]  # sizes differ: an object column, as Serve batches them
    out = DetectPredictor(str(model_dir))({"image": images})
    answer = TASK.response([{k: v[i] for k, v in out.items()} for i in range(2)], batched)
    found, blank = answer["predictions"]
    assert len(found["faces"]) >= 1 and set(found["faces"][0]) >= {"box", "score", "landmarks"}
    assert blank == {"faces": []}  # no face is an answer, not an error
    with pytest.raises(UploadError) as err:
        TASK.request_rows(TASK.Request(image="bm90IGFuIGltYWdl"))
    assert 400 <= err.value.status < 500
    with pytest.raises(ValueError):
        TASK.Request(image="x", images=["y"])


def test_truth_boxes_of_the_synthetic_test_split(cartoons):
    boxes, labels = truth_boxes(Path(cartoons) / "test")
    assert len(boxes) == 4 and all(len(b) == len(labels[f]) >= 1 for f, b in boxes.items())


def test_detect_bench_table_on_a_fake_data_root(cartoons, tmp_path):
    """The bench's table, CSV and PR plot, on cartoon VOC images and cartoon 'crops' (no Ray)."""
    from facelab.detect_bench import best_voc, run_bench

    root = tmp_path / "data"
    shutil.copytree(cartoons / "val", root / "facemask_voc")
    shutil.copytree(cartoons / "test" / "images", root / "orl_faces" / "s1")
    table = run_bench(root, tmp_path / "bench", detectors=["mediapipe"], min_sides=[160], limit=3,
                      sets=["facemask_voc", "orl_faces"], run_all=lambda calls: {k: f(*a) for k, (f, a) in calls.items()})
    voc, crops = table.set_index("dataset").loc["facemask_voc"], table.set_index("dataset").loc["orl_faces"]
    assert voc["ap50"] > 0.6 and crops["n_images"] == 3 and crops["detection_rate"] == 1.0
    assert best_voc(table)["model"] == "mediapipe"
    assert (tmp_path / "bench" / "bench.csv").is_file() and (tmp_path / "bench" / "pr_curves.png").is_file()
