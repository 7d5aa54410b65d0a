"""ultralytics made offline before it is imported; import this module before any of ultralytics.

Importing it sets `YOLO_OFFLINE=1` (no online checks), `YOLO_AUTOINSTALL=0` (no pip),
`YOLO_CONFIG_DIR` in facelab's cache with `Arial.ttf` and `Arial.Unicode.ttf` copied from
matplotlib's DejaVuSans.ttf (ultralytics downloads them to draw its plots), its settings with
`sync` and every integration off (analytics; ultralytics' own Ray Tune callback would report each
epoch a second time, without a checkpoint), and an AMP check that does not download yolo26n.pt
on a GPU. `YOLO_VERBOSE` is off unless set: Tune shows the per-epoch metrics. Models are built
from ultralytics' YAML (`yolov8n.yaml`, `yolo11s-cls.yaml`); no weights are ever fetched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from facelab.config import cache_dir

ULTRALYTICS_DIR = cache_dir() / "ultralytics"  # YOLO_CONFIG_DIR; ultralytics adds "Ultralytics/"
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def _offline_environment() -> None:
    """Everything ultralytics reads at import time to decide whether to go online."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ["YOLO_CONFIG_DIR"] = str(ULTRALYTICS_DIR)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.pop("ULTRALYTICS_API_KEY", None)  # would stream every fit to Ultralytics' platform
    # ultralytics' safe load: its own model loads (YOLO(path), a trainer's resume) unpickle with
    # torch.load(weights_only=True) against its allow-list of model classes, not arbitrary code
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
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
from ultralytics.utils import SETTINGS  # noqa: E402


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
