"""A trial's best checkpoint as a model folder: `model.pt` (no optimizer), `config.json`,
`history.csv` + `history.png` (its per-epoch metrics) and ultralytics' `results.csv`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError
from facelab.yolo import offline  # noqa: F401  (first: ultralytics offline before it is imported)

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"


def load_checkpoint(path: Path | str) -> dict:
    """An ultralytics checkpoint (a pickled model object, so plain `weights_only=True` cannot load
    it) unpickled by ultralytics' safe load: `torch.load(weights_only=True)` with only its model
    classes allowed, whatever ULTRALYTICS_SAFE_LOAD says. A file holding anything else (code to
    run) is refused with a FacelabError naming it."""
    from ultralytics.nn.tasks import torch_safe_load

    try:
        checkpoint, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as exc:  # noqa: BLE001 - torch and ultralytics raise many kinds on a bad pickle
        raise FacelabError(f"{path}: not a safely loadable ultralytics checkpoint "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    return checkpoint


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
        # strip_optimizer unpickles with weights_only=False: the file must first pass the safe load
        load_checkpoint(Path(saved) / "last.pt")
        strip_optimizer(Path(saved) / "last.pt", str(model_dir / MODEL_FILE))
        if (Path(saved) / "results.csv").is_file():
            shutil.copyfile(Path(saved) / "results.csv", model_dir / "results.csv")
    (model_dir / CONFIG_FILE).write_text(json.dumps(
        {"config": config, "kind": kind, "names": list(names), "imgsz": int(config["imgsz"])},
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
