"""facelab: train, tune, serve and batch-run face analysis on Ray."""

__version__ = "0.1.0"
