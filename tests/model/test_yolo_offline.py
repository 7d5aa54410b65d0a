"""ultralytics inside facelab never reaches for the network: a tiny fit, plots included, with every
socket refused, prints no URL and downloads nothing (no fonts, no weights, no analytics)."""

from __future__ import annotations

import logging
import socket

import pandas as pd

from facelab.formats import get_format
from facelab.formats.mask import MASK_TYPES, parse_bbox
from facelab.store import fingerprint


def _rows(data, split):
    frame = pd.read_csv(data / f"{split}.csv")
    boxes = [parse_bbox(b) for b in frame["bbox"]]
    return pd.DataFrame({"image_id": frame["ImageID"], "path": [str(data / split / f"{i}.jpg") for i in frame["ImageID"]],
                         "label": frame["masktype"], "xmin": [b[0] for b in boxes], "ymin": [b[1] for b in boxes],
                         "xmax": [b[2] for b in boxes], "ymax": [b[3] for b in boxes]})


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_a_tiny_fit_tries_no_network(tmp_path, monkeypatch, capfd):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("the network is off in this test")

    for owner, name in ((socket, "create_connection"), (socket, "getaddrinfo"), (socket.socket, "connect")):
        monkeypatch.setattr(owner, name, refuse)

    from facelab.yolo import offline  # first: it makes ultralytics offline before importing it
    from facelab.yolo.layout import YoloData, materialize
    from facelab.yolo.train import TRAINERS, train_args

    import ultralytics.engine.trainer
    from ultralytics.utils import LOGGER, SETTINGS

    assert SETTINGS["sync"] is False and SETTINGS["raytune"] is False
    assert ultralytics.engine.trainer.check_amp is offline._amp_without_download
    data = get_format("mask").synthesize(tmp_path / "data", n=8, seed=1)
    rows = {split: _rows(data, split) for split in ("train", "val")}
    source = materialize(YoloData("detect", MASK_TYPES, rows, fingerprint(data), None), cache=tmp_path / "cache")
    said = _Collect()
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)  # keep everything ultralytics says, to search it for URLs
    LOGGER.addHandler(said)
    try:
        args = train_args({"model": "yolov8n", "imgsz": 64, "epochs": 1, "batch": 4, "plots": True}, "detect",
                          source, tmp_path / "run")
        trainer = TRAINERS["detect"](overrides=args)
        trainer.train()
    finally:
        LOGGER.setLevel(level)
        LOGGER.removeHandler(said)
    printed = capfd.readouterr()
    text = "\n".join(said.lines) + printed.out + printed.err
    assert "Starting training" in text  # the log was captured
    assert not attempts
    assert "http" not in text.lower() and "download" not in text.lower()
    callbacks = [cb for cbs in trainer.callbacks.values() for cb in cbs]
    assert not any(cb.__module__.endswith("raytune") for cb in callbacks)  # facelab reports to Tune itself
    assert (tmp_path / "run" / "weights" / "last.pt").is_file()
    assert list((tmp_path / "run").glob("*.jpg")) or list((tmp_path / "run").glob("*.png"))  # plots, local font
