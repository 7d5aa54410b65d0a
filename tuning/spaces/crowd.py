"""Crowd search space: how faces are compared (nothing is trained, so every trial is cheap: the
sweep computes every variant's distances once and a trial only scores its own)."""

from __future__ import annotations


def space(trial) -> dict:
    method = trial.suggest_categorical("method", ["encoding", "landmarks"])
    if method == "encoding":
        trial.suggest_categorical("model", ["mean", "small", "large"])
        trial.suggest_categorical("tiles", ["whole", "detect"])
        return {}
    return {"model": "mesh"}  # landmarks use mediapipe's mesh, no encoder model


# Every variant once (the default config, the seed's winner, is always tried first): there are only
# seven, and the sweep has their distances already.
extra_points = [{"method": "encoding", "model": model, "tiles": tiles}
                for tiles in ("detect", "whole") for model in ("mean", "small", "large")
                if (model, tiles) != ("mean", "detect")] + [{"method": "landmarks"}]
