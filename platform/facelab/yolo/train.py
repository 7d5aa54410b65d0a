"""ultralytics' trainers as facelab runs them: the trainer arguments of a config, a detection
validator that keeps every image's truth and predictions, and each epoch's metrics scored the
way the task scores submissions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.yolo import offline  # noqa: F401  (first: ultralytics offline before it is imported)
from facelab.yolo.layout import Scorer

from ultralytics.models.yolo.classify import ClassificationTrainer  # noqa: E402  isort: skip
from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator  # noqa: E402  isort: skip
from ultralytics.utils import ops  # noqa: E402  isort: skip

# trainer arguments facelab sets itself (a config may not)
_OWN_ARGS = {"model", "data", "project", "name", "save_dir", "exist_ok", "resume", "device", "mode", "task",
             "plots_dir", "pretrained"}
# config keys facelab reads itself (facelab.task_config.YoloConfig); every other key is a trainer argument
FACELAB_KEYS = {"model", "merge_val", "crop_double"}


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
    """ultralytics trainer overrides: every config key but facelab's own, plus what facelab sets.
    A key ultralytics does not know, or one facelab sets itself, is an error (never dropped)."""
    import torch
    from ultralytics.cfg import DEFAULT_CFG_DICT

    args = {k: v for k, v in config.items() if k not in FACELAB_KEYS}
    wrong = sorted(k for k in args if k not in DEFAULT_CFG_DICT or k in _OWN_ARGS)
    if wrong:
        raise FacelabError(f"YOLO config: {', '.join(wrong)} not ultralytics training arguments a config may set")
    args.update(model=model_yaml(config["model"], kind), data=str(source), save_dir=str(save_dir),
                exist_ok=True, device="0" if torch.cuda.is_available() else "cpu", save=True, val=True,
                pretrained=False)
    args.setdefault("workers", _assigned_cpus())  # data loaders (ultralytics uses none on a CPU)
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
