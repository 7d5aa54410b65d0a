"""The seed's track aggregator as a torch module, and tracks of any length padded into a batch."""

from __future__ import annotations

import numpy as np


def load_torch():
    import torch

    return torch


def build_aggregator(config: dict):
    """The seed's aggregator for `config` (dimensions from the data: `dim`, `pca_fitted`)."""
    torch = load_torch()
    nn, functional = torch.nn, torch.nn.functional

    class TrackAggregator(nn.Module):
        """frames [B, T, dim] (any norm) + mask [B, T] -> unit track descriptors [B, dim]."""

        def __init__(self, dim: int, pca: int, code: int, temperature: float, quality: str, power: float):
            super().__init__()
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("components", torch.zeros(pca, dim))  # rows: principal axes
            self.encoder = nn.Linear(pca, code)
            nn.init.zeros_(self.encoder.bias)
            self.decoder = nn.Linear(code, pca, bias=False)
            self.temperature, self.quality = float(temperature), quality
            self.power = nn.Parameter(torch.tensor(float(power))) if quality == "norm" else None

        def frame_weights(self, norms, mask):
            if self.power is None:
                return mask.float()
            # relative to the track's largest norm, so high powers stay in float range (the
            # weights are normalised afterwards, so the ratio changes nothing else)
            largest = (norms * mask).amax(dim=1, keepdim=True).clamp_min(1e-12)
            return mask.float() * torch.exp(self.power * torch.log((norms / largest).clamp_min(1e-12)))

        def forward(self, frames, mask):
            norms = frames.norm(dim=-1)
            projected = (frames / norms.clamp_min(1e-12)[..., None] - self.mean) @ self.components.T
            codes = functional.softmax(self.encoder(projected) / self.temperature, dim=-1)
            weights = self.frame_weights(norms, mask)
            code = (codes * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-12)
            return functional.normalize(self.decoder(code) @ self.components + self.mean, dim=-1)

    return TrackAggregator(int(config["dim"]), int(config["pca_fitted"]), int(config["code_size"]),
                           float(config["temperature"]), config["quality"], float(config["quality_power"]))


def pad_tracks(tracks: list[np.ndarray], max_frames: int, rng: np.random.Generator | None = None):
    """Tracks of any length as (frames [B, T, D] float32, mask [B, T] bool), T = max_frames;
    a longer track keeps a random subset of frames when `rng` is given, else its first ones."""
    dim = int(np.asarray(tracks[0]).shape[-1]) if len(tracks) else 0
    frames = np.zeros((len(tracks), max_frames, dim), np.float32)
    mask = np.zeros((len(tracks), max_frames), bool)
    for i, track in enumerate(tracks):
        track = np.asarray(track, np.float32).reshape(-1, dim)
        if len(track) > max_frames:
            keep = np.sort(rng.choice(len(track), max_frames, replace=False)) if rng is not None else slice(max_frames)
            track = track[keep]
        frames[i, :len(track)], mask[i, :len(track)] = track, True
    return frames, mask
