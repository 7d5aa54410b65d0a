"""ultralytics inside facelab: offline by construction, every fit inside a Ray Tune trial.

Importing this module makes ultralytics offline *before* ultralytics itself is imported:
`YOLO_OFFLINE=1` (no online checks), `YOLO_AUTOINSTALL=0` (no pip), `YOLO_CONFIG_DIR` in
facelab's cache with `Arial.ttf` and `Arial.Unicode.ttf` copied from matplotlib's DejaVuSans.ttf
(ultralytics downloads them to draw its plots), its settings with `sync` and every integration
off (analytics; ultralytics' own Ray Tune callback would report each epoch a second time, without
a checkpoint), and an AMP check that does not download yolo26n.pt on a GPU. `YOLO_VERBOSE` is
off unless set: Tune shows the per-epoch metrics. Models are built from ultralytics' YAML
(`yolov8n.yaml`, `yolo11s-cls.yaml`); no weights are ever fetched.

Data: `YoloData.from_reads` takes a task's validated splits (ids, image paths, labels, boxes);
`materialize` writes ultralytics' layout into `<cache>/yolo-data/<kind>-<key>` on whichever node
runs the fit, keyed by the data fingerprint (`facelab.store.fingerprint` of the data folder, the
rows kept and the layout options), never into the user's data folder.

Fitting: `trial(config, data)` is a Ray Tune function trainable. It trains in the trial's working
directory (synced to the trial directory), and every epoch reports the task's own validation
metrics (scored by the task's `scorer` from ultralytics' validation predictions) to Tune with a
checkpoint (`last.pt` + `results.csv`), so ASHA can stop it, `Tuner.restore` resumes it from its
latest epoch, and the best epoch's weights can be promoted. `fit` runs one such trial (the
resources come from the cluster: a GPU when it has one); `export` turns a checkpoint into a model
folder; `load`, `detect` and `classify` run a model folder on RGB images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from facelab.config import cache_dir
from facelab.errors import FacelabError

ULTRALYTICS_DIR = cache_dir() / "ultralytics"  # YOLO_CONFIG_DIR; ultralytics adds "Ultralytics/"
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
# config keys facelab sets itself; every other key ultralytics knows is passed to its trainer
_OWN_ARGS = {"model", "data", "project", "name", "save_dir", "exist_ok", "resume", "device", "mode", "task",
             "plots_dir", "pretrained"}


def _offline_environment() -> None:
    """Everything ultralytics reads at import time to decide whether to go online."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ["YOLO_CONFIG_DIR"] = str(ULTRALYTICS_DIR)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.pop("ULTRALYTICS_API_KEY", None)  # would stream every fit to Ultralytics' platform
    fonts = ULTRALYTICS_DIR / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FONTS if not (fonts / name).is_file()]
    if missing:
        import matplotlib

        dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in missing:
            partial = fonts / f".{name}.{os.getpid()}"
            shutil.copyfile(dejavu, partial)
            os.replace(partial, fonts / name)  # atomic: parallel trials never see half a font


_offline_environment()

import ultralytics  # noqa: E402
import ultralytics.engine.trainer as _ultralytics_trainer  # noqa: E402
from ultralytics.models.yolo.classify import ClassificationTrainer  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator  # noqa: E402
from ultralytics.utils import SETTINGS, ops  # noqa: E402


def _offline_settings() -> None:
    """Settings with no sync and no integrations. If ultralytics was imported before this module
    (so it read another config dir and its online flags already), the same in memory only: the
    user's own settings file stays as it is, and fonts come from facelab's folder."""
    import ultralytics.utils.checks
    import ultralytics.utils.events

    wanted = {"sync": False, "raytune": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
              "wandb": False, "tensorboard": False, "vscode_msg": False, "openvino_msg": False,
              "runs_dir": str(cache_dir() / "ultralytics-runs"),
              "weights_dir": str(cache_dir() / "ultralytics-weights"),
              "datasets_dir": str(cache_dir() / "yolo-data")}
    fonts = ULTRALYTICS_DIR / "Ultralytics"
    if Path(SETTINGS.file).parent != fonts:
        dict.update(SETTINGS, wanted)  # JSONDict saves on update(); dict.update does not
        ultralytics.utils.checks.USER_CONFIG_DIR = fonts
    elif any(SETTINGS.get(k) != v for k, v in wanted.items()):  # write once, not from every parallel trial
        SETTINGS.update(wanted)
    for module in (ultralytics.utils, ultralytics.utils.checks, ultralytics.utils.events):
        for flag in ("ONLINE", "AUTOINSTALL"):
            if hasattr(module, flag):
                setattr(module, flag, False)
    ultralytics.utils.events.events.enabled = False  # analytics, decided when ultralytics was imported


def _amp_without_download(model) -> bool:
    """ultralytics checks AMP by downloading yolo26n.pt; facelab uses AMP on CUDA without that check."""
    return next(model.parameters()).device.type == "cuda"


_offline_settings()
_ultralytics_trainer.check_amp = _amp_without_download


# --- data ----------------------------------------------------------------------------------------

Scorer = Callable[..., dict]


@dataclass(frozen=True)
class YoloData:
    """A task's validated splits as rows (`image_id`, `path`, `label`, and for detection the box
    `xmin`..`ymax` in pixels; several rows per image are several objects), the class names in
    index order, the data fingerprint, and the task's scorer of validation predictions:
    detection `scorer(truth, predictions)` with truth `(image_id, box, label)` and predictions
    `(image_id, box, label, confidence)`; classification `scorer(true_labels, predicted_labels)`."""

    kind: str  # "detect" or "classify"
    names: tuple[str, ...]
    rows: dict[str, pd.DataFrame]
    fingerprint: str
    scorer: Scorer = field(compare=False)

    @classmethod
    def from_reads(cls, kind: str, reads: dict, names: Sequence[str], scorer: Scorer) -> YoloData:
        from facelab.store import fingerprint

        rows = {}
        for split, read in reads.items():
            frame = read.dataset.to_pandas()
            out = frame[["image_id", "path", "label"]].astype(str).reset_index(drop=True)
            if kind == "detect":
                out[["xmin", "ymin", "xmax", "ymax"]] = np.stack([np.asarray(b, float) for b in frame["box"]])
            rows[split] = out
        unknown = {label for frame in rows.values() for label in frame["label"]} - set(names)
        if unknown:
            raise FacelabError(f"labels {sorted(unknown)} are not among the classes {list(names)}")
        paths = [p for frame in rows.values() for p in frame["path"]]
        if not paths:
            raise FacelabError("no rows to train on")
        root = os.path.commonpath([str(Path(p).parent.parent) for p in paths])
        digest = hashlib.sha256(fingerprint(root).encode())
        for split in sorted(rows):
            digest.update(split.encode() + rows[split].to_csv(index=False).encode())
        return cls(kind, tuple(names), rows, digest.hexdigest(), scorer)


def materialize(data: YoloData, *, merge_val: bool = False, crop_double: float = 0.0,
                cache: str | os.PathLike | None = None) -> Path:
    """ultralytics' layout of `data` in the cache (built once per key, atomically): for detection
    the `data.yaml` of `images/<split>/` + `labels/<split>/`, for classification the folder of
    `<split>/<class>/`. `merge_val` also trains on val (val stays the validation set);
    `crop_double` > 0 adds to train a central crop of that fraction of every image, resized back
    to the image's size (the age seed's 280/512 doubling)."""
    options = json.dumps({"merge_val": bool(merge_val), "crop_double": float(crop_double)}, sort_keys=True)
    key = hashlib.sha256((data.fingerprint + options).encode()).hexdigest()[:20]
    folder = Path(cache_dir(cache)) / "yolo-data" / f"{data.kind}-{key}"
    result = folder / "data.yaml" if data.kind == "detect" else folder
    if (folder / ".complete").is_file():
        return result
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        splits = {"train": data.rows["train"], "val": data.rows["val"]}
        if merge_val:
            splits["train"] = pd.concat([data.rows["train"], data.rows["val"]], ignore_index=True)
        for split, rows in splits.items():
            crop = crop_double if split == "train" else 0.0
            if data.kind == "detect":
                _write_detection_split(rows, building, split, data.names, crop)
            else:
                _write_classification_split(rows, building / split, data.names, crop)
        if data.kind == "detect":
            (building / "data.yaml").write_text(yaml.safe_dump({
                "path": str(folder), "train": "images/train", "val": "images/val",
                "names": dict(enumerate(data.names))}, sort_keys=False))
        (building / ".complete").write_text(options)
        try:
            os.rename(building, folder)
        except OSError:  # another trial built the same key meanwhile
            if not (folder / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return result


def _place(src: str, dest: Path) -> None:
    """A hard link where the filesystem allows (no copy of the user's data), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _central_crop(src: str, dest: Path, fraction: float) -> tuple[int, int]:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
        left, top = (w - cw) // 2, (h - ch) // 2
        im.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR).save(dest, quality=95)
    return left, top


def _write_classification_split(rows: pd.DataFrame, folder: Path, names: Sequence[str], crop: float) -> None:
    for name in names:  # every class folder, so class indices never depend on which labels a split holds
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows.itertuples()):
        stem = f"{i:06d}_{row.image_id}"  # unique even when train and val share an id
        _place(row.path, folder / row.label / f"{stem}{Path(row.path).suffix}")
        if crop:
            _central_crop(row.path, folder / row.label / f"{stem}_crop.jpg", crop)


def _write_detection_split(rows: pd.DataFrame, root: Path, split: str, names: Sequence[str], crop: float) -> None:
    from PIL import Image

    images, labels = root / "images" / split, root / "labels" / split
    labels.mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(names)}
    for image_id, objects in rows.groupby("image_id", sort=False):
        path = objects["path"].iloc[0]
        with Image.open(path) as im:
            width, height = im.size
        _place(path, images / f"{image_id}{Path(path).suffix}")
        boxes = objects[["xmin", "ymin", "xmax", "ymax"]].to_numpy(float)
        classes = [index[label] for label in objects["label"]]
        (labels / f"{image_id}.txt").write_text(_yolo_lines(classes, boxes, width, height))
        if crop:
            left, top = _central_crop(path, images / f"{image_id}_crop.jpg", crop)
            scale = 1.0 / crop
            moved = (boxes - [left, top, left, top]) * scale
            moved[:, [0, 2]] = moved[:, [0, 2]].clip(0, width)
            moved[:, [1, 3]] = moved[:, [1, 3]].clip(0, height)
            keep = (moved[:, 2] - moved[:, 0] > 1) & (moved[:, 3] - moved[:, 1] > 1)
            (labels / f"{image_id}_crop.txt").write_text(
                _yolo_lines([c for c, k in zip(classes, keep) if k], moved[keep], width, height))


def _yolo_lines(classes: Sequence[int], boxes: np.ndarray, width: int, height: int) -> str:
    """`class x_center y_center width height`, normalised to the image (YOLO txt labels)."""
    lines = []
    for c, (x0, y0, x1, y1) in zip(classes, boxes):
        lines.append(f"{c} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


# --- training inside a Tune trial -----------------------------------------------------------------

class _RecordingDetectionValidator(DetectionValidator):
    """ultralytics' detection validator that also keeps every image's truth and predicted boxes
    (in the image's own pixels), so each epoch is scored the way the task scores submissions."""

    def init_metrics(self, model) -> None:
        super().init_metrics(model)
        self.truth, self.detections = [], []

    def update_metrics(self, preds, batch) -> None:
        super().update_metrics(preds, batch)
        names = self.names
        for si, pred in enumerate(preds):
            pbatch = self._prepare_batch(si, batch)
            image_id = Path(pbatch["im_file"]).stem
            truth = ops.scale_boxes(pbatch["imgsz"], pbatch["bboxes"].clone(), pbatch["ori_shape"],
                                    ratio_pad=pbatch["ratio_pad"])
            self.truth += [(image_id, box, names[int(c)]) for box, c in zip(truth.tolist(), pbatch["cls"].tolist())]
            scaled = self.scale_preds(pred, pbatch)
            self.detections += [(image_id, box, names[int(c)], float(conf)) for box, c, conf in
                                zip(scaled["bboxes"].tolist(), scaled["cls"].tolist(), scaled["conf"].tolist())]


class _DetectionTrainer(DetectionTrainer):
    def get_validator(self):
        from copy import copy

        return _RecordingDetectionValidator(self.test_loader, save_dir=self.save_dir, args=copy(self.args),
                                            _callbacks=self.callbacks)


TRAINERS = {"detect": _DetectionTrainer, "classify": ClassificationTrainer}


def model_yaml(model: str, kind: str) -> str:
    """The ultralytics YAML of a model name such as `yolov8n` or `yolo11s` (`-cls` for classify)."""
    name = str(model).removesuffix(".yaml").removesuffix("-cls")
    return f"{name}{'-cls' if kind == 'classify' else ''}.yaml"


def train_args(config: dict, kind: str, source: Path, save_dir: Path) -> dict:
    """ultralytics trainer overrides: every config key ultralytics knows, plus facelab's own."""
    import torch
    from ultralytics.cfg import DEFAULT_CFG_DICT

    args = {k: v for k, v in config.items() if k in DEFAULT_CFG_DICT and k not in _OWN_ARGS}
    args.update(model=model_yaml(config.get("model", "yolov8n"), kind), data=str(source), save_dir=str(save_dir),
                exist_ok=True, device="0" if torch.cuda.is_available() else "cpu", save=True, val=True,
                pretrained=False)
    args.setdefault("workers", _assigned_cpus())  # data loaders (ultralytics uses none on a CPU)
    args.setdefault("plots", True)
    return args


def _assigned_cpus() -> int:
    """The CPUs Ray gave this trial (2 outside Ray)."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return 2
    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 2)))


def _clean_key(key: str) -> str:
    return key.replace("metrics/", "").replace("(B)", "").replace("/", "_").replace("-", "_").lower()


def epoch_metrics(trainer, scorer: Scorer) -> dict[str, float]:
    """The task's own validation metrics of the epoch that just ended, ultralytics' (renamed:
    `map50`, `map50_95`, `accuracy_top1`, `val_box_loss`...) and the training losses
    (`train_loss` their sum)."""
    validator = trainer.validator
    if isinstance(validator, _RecordingDetectionValidator):
        own = scorer(validator.truth, validator.detections)
    else:
        names = trainer.data["names"]
        predicted = [names[int(i)] for batch in validator.pred for i in batch[:, 0].tolist()]
        truth = [names[int(i)] for batch in validator.targets for i in batch.tolist()]
        own = scorer(truth, predicted)
    losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss else {}
    out = {_clean_key(k): float(v) for k, v in {**losses, **trainer.metrics}.items() if np.isscalar(v)}
    out["train_loss"] = float(sum(losses.values()))
    out.update({k: float(v) for k, v in own.items()})
    out["epoch"] = trainer.epoch + 1
    return out


def _reporter(scorer: Scorer):
    def report_epoch(trainer) -> None:
        from ray import tune

        if not trainer.validator.training:  # ultralytics' final re-validation of best.pt, not an epoch
            return
        with tempfile.TemporaryDirectory(prefix="facelab-yolo-ckpt-") as tmp:
            shutil.copyfile(trainer.last, Path(tmp) / "last.pt")
            if trainer.csv.is_file():
                shutil.copyfile(trainer.csv, Path(tmp) / "results.csv")
            tune.report(epoch_metrics(trainer, scorer), checkpoint=tune.Checkpoint.from_directory(tmp))

    return report_epoch


def trial(config: dict, data: YoloData) -> None:
    """Ray Tune function trainable: one ultralytics fit of `config` on `data`, reporting every
    epoch with a checkpoint; restored from its latest checkpoint when Tune resumes it."""
    from ray import tune

    source = materialize(data, merge_val=bool(config.get("merge_val", False)),
                         crop_double=float(config.get("crop_double", 0.0) or 0.0))
    save_dir = Path.cwd() / "yolo"  # the trial's working directory, synced to its trial directory
    args = train_args(config, data.kind, source, save_dir)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        (save_dir / "weights").mkdir(parents=True, exist_ok=True)
        with checkpoint.as_directory() as saved:
            shutil.copyfile(Path(saved) / "last.pt", save_dir / "weights" / "last.pt")
            if (Path(saved) / "results.csv").is_file():
                shutil.copyfile(Path(saved) / "results.csv", save_dir / "results.csv")
        if _finished(save_dir / "weights" / "last.pt"):
            return
        args["resume"] = str(save_dir / "weights" / "last.pt")
    trainer = TRAINERS[data.kind](overrides=args)
    trainer.add_callback("on_fit_epoch_end", _reporter(data.scorer))
    trainer.train()


def _finished(last: Path) -> bool:
    """Whether a checkpoint already holds its run's last epoch (nothing left to resume)."""
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return ckpt.get("epoch", -1) + 1 >= int(ckpt.get("train_args", {}).get("epochs", 0))


def trial_resources() -> dict:
    """Per trial: with GPUs, one GPU and its share of the CPUs (up to 8, for the data loaders);
    without, 2 CPUs (the whole of a small machine)."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 1)), int(total.get("GPU", 0))
    if gpus:
        return {"cpu": max(1.0, min(8.0, cpus // gpus)), "gpu": 1}
    return {"cpu": max(1.0, min(2.0, cpus))}


def run_config(name: str, storage: str, metric: str, mode: str, **kwargs):
    """Trial directories keep the best and the latest checkpoint and ultralytics' plots."""
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                checkpoint_score_order=mode),
        sync_config=tune.SyncConfig(sync_artifacts=True), **kwargs)


def fit(config: dict, data: YoloData, *, metric: str, mode: str, name: str, storage: str | None = None):
    """One YOLO fit as a single Tune trial; returns its `ray.tune.Result` (raises if it failed)."""
    from ray import tune

    from facelab.torch_train import default_storage

    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, data=data), trial_resources()),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=run_config(name, storage or default_storage(), metric, mode, verbose=1),
    )
    result = tuner.fit()[0]
    if result.error:
        raise FacelabError(f"YOLO fit '{name}' failed: {result.error}")
    return result


def best_checkpoint(result, metric: str, mode: str):
    """The trial's best `ray.tune.Checkpoint` by `metric` and the metrics reported with it."""
    scored = [(ckpt, m) for ckpt, m in result.best_checkpoints if np.isfinite(m.get(metric, np.nan))]
    if not scored:
        raise FacelabError(f"trial {result.path} reported no checkpoint with a finite '{metric}'")
    sign = 1.0 if mode == "max" else -1.0  # on a tie the later epoch (trained longer) wins
    ckpt, metrics = max(scored, key=lambda cm: (sign * cm[1][metric], cm[1].get("epoch", 0)))
    return ckpt, metrics


def export(result, model_dir: Path, config: dict, *, kind: str, names: Sequence[str], metric: str,
           mode: str) -> dict[str, float]:
    """The best checkpoint of a trial as a model folder: `model.pt` (no optimizer), `config.json`,
    `history.csv` + `history.png` (its per-epoch metrics), ultralytics' `results.csv`; returns
    the metrics reported with that checkpoint (validation split)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    from facelab import plots

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, metrics = best_checkpoint(result, metric, mode)
    with checkpoint.as_directory() as saved:  # local storage: in place; a URI: a temporary copy
        strip_optimizer(Path(saved) / "last.pt", str(model_dir / MODEL_FILE))
        if (Path(saved) / "results.csv").is_file():
            shutil.copyfile(Path(saved) / "results.csv", model_dir / "results.csv")
    (model_dir / CONFIG_FILE).write_text(json.dumps(
        {"config": config, "kind": kind, "names": list(names), "imgsz": int(config.get("imgsz", 640))},
        indent=2, default=str))
    history = result.metrics_dataframe
    if history is not None and len(history):
        keep = ["epoch", "train_loss", metric, *[k for k in _HISTORY_EXTRA if k in history and k != metric]]
        history = history[[k for k in keep if k in history]].drop_duplicates("epoch", keep="last")
        history.to_csv(model_dir / HISTORY_CSV, index=False)
        plots.history_png(history, model_dir / HISTORY_PNG, metric=metric, best_epoch=int(metrics["epoch"]), mode=mode)
    return {k: float(v) for k, v in metrics.items() if k in _REPORTED or k.startswith(metric)}


_HISTORY_EXTRA = ("type_accuracy", "accuracy", "f1_weighted", "map50", "map50_95", "accuracy_top1")
_REPORTED = {"epoch", "train_loss", *_HISTORY_EXTRA}


# --- prediction -----------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A model folder ready to predict: the ultralytics model, its class names and image size."""

    model: "ultralytics.YOLO"
    names: tuple[str, ...]
    imgsz: int
    device: str


def load(model_dir: str | os.PathLike) -> LoadedModel:
    """A model folder written by `export`, on a GPU when one is visible."""
    import torch
    from ultralytics import YOLO

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    return LoadedModel(YOLO(str(model_dir / MODEL_FILE)), tuple(meta["names"]), int(meta["imgsz"]), device)


def _chunks(images: Sequence[np.ndarray], size: int):
    for start in range(0, len(images), size):
        yield [np.ascontiguousarray(im[..., ::-1]) for im in images[start:start + size]]  # ultralytics takes BGR


def detect(loaded: LoadedModel, images: Sequence[np.ndarray], *, conf: float = 0.001,
           chunk: int = 16) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per RGB image: boxes [n, 4] in its pixels, confidences [n], labels; most confident first."""
    out = []
    for batch in _chunks(images, chunk):
        for result in loaded.model.predict(batch, imgsz=loaded.imgsz, conf=conf, device=loaded.device, verbose=False):
            boxes = result.boxes
            order = np.argsort(-boxes.conf.cpu().numpy(), kind="stable")
            names = result.names
            out.append((boxes.xyxy.cpu().numpy()[order], boxes.conf.cpu().numpy()[order],
                        [names[int(c)] for c in boxes.cls.cpu().numpy()[order]]))
    return out


def classify(loaded: LoadedModel, images: Sequence[np.ndarray], *, chunk: int = 32) -> np.ndarray:
    """Class probabilities [n_images, n_classes] of RGB images, columns in `loaded.names` order."""
    rows = []
    for batch in _chunks(images, chunk):
        for result in loaded.model.predict(batch, imgsz=loaded.imgsz, device=loaded.device, verbose=False):
            probs = result.probs.data.cpu().numpy().astype(np.float64)
            by_name = {result.names[i]: probs[i] for i in range(len(probs))}
            rows.append([by_name.get(name, 0.0) for name in loaded.names])
    return np.asarray(rows).reshape(len(rows), len(loaded.names))
