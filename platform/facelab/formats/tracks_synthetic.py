"""Synthetic MCS2019 tracks: identities on a 200-d subspace of the 512-d unit sphere, 10-frame
tracks with low-quality frames, written in the MCS2019 layout (`facelab.formats.tracks`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelab.formats.embeddings import l2_normalize
from facelab.formats.tracks import DIM, write_layout


def synthesize(out: Path, *, n: int = 60, seed: int = 0) -> Path:
    """Identities on a 200-d subspace of the 512-d unit sphere; 10-frame tracks.

    Each person has a centre and 3 references near it; each track has its own offset
    (pose, light) and per-frame noise. About a third of frames are low quality: mostly noise
    drawn towards one shared "blurry face" direction, so the plain mean of a track is pulled
    towards other people's tracks and a quality-aware aggregation clearly beats it. Frame
    descriptors keep their norm, as the MCS2019 winner's re-run encoder did: good frames have
    norms of about 6-8, low-quality ones about 3-4.5 (the seed's "norm as uncertainty");
    references are unit vectors. `n` people in train (20% of them is_val), n // 2 other
    people in test (truth in test_truth/).
    """
    rng = np.random.default_rng(seed)
    world = World(rng)
    train = world.people(n, val_share=0.2)
    test = world.people(max(n // 2, 4), val_share=0.0)
    return write_layout(Path(out), train, test, rng)


class World:
    """The synthetic embedding space: identity centres, references and track frames."""

    latent, frames_per_track, references = 200, 10, 3
    # noise norms relative to a unit identity centre; calibrated (n=60, seeds 0-5) so that on
    # the test split TPR@1e-4 is ~0.47-0.68 for the mean baseline, ~0.76-0.88 when the
    # low-quality frames are left out, 1.0 for the mean of the person's references, 0 at random
    reference_noise, track_noise, frame_noise, bad_noise = 1.3, 1.5, 1.0, 0.5
    bad_share = (0.5, 1.0)  # per-track low-quality share ~ Beta(0.5, 1.0): mean 1/3, many clean tracks, some bad
    good_norms, bad_norms = (6.0, 8.0), (3.0, 4.5)  # uniform ranges of the frames' descriptor norms

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.basis = np.linalg.qr(rng.normal(size=(DIM, self.latent)))[0]  # 512 x 200, orthonormal
        self.blurry = l2_normalize(rng.normal(size=self.latent))

    def _noise(self, shape, scale: float) -> np.ndarray:
        return self.rng.normal(0, scale / np.sqrt(self.latent), (*shape, self.latent))

    def _embed(self, z: np.ndarray) -> np.ndarray:
        full = z @ self.basis.T + self.rng.normal(0, 0.03 / np.sqrt(DIM), (*z.shape[:-1], DIM))
        return l2_normalize(full)

    def people(self, count: int, val_share: float) -> dict:
        rng = self.rng
        centres = l2_normalize(rng.normal(size=(count, self.latent)))
        ids = [rng.bytes(16).hex() for _ in range(count)]
        is_val = np.zeros(count, bool)
        is_val[rng.permutation(count)[:int(np.ceil(count * val_share))]] = True
        refs = self._embed(centres[:, None] + self._noise((count, self.references), self.reference_noise))
        gt = pd.DataFrame({"person_id": np.repeat(ids, self.references),
                           "person_img_id": [rng.bytes(16).hex() for _ in range(count * self.references)]})
        frames, descriptors, order = [], [], []
        for p in range(count):
            for _ in range(rng.integers(2, 6)):
                track, video = rng.bytes(16).hex(), rng.bytes(16).hex()
                offset = self._noise((), self.track_noise)
                bad = rng.random(self.frames_per_track) < rng.beta(*self.bad_share)
                good_z = centres[p] + offset + self._noise((self.frames_per_track,), self.frame_noise)
                bad_z = self.blurry + self._noise((self.frames_per_track,), self.bad_noise)
                norms = np.where(bad, rng.uniform(*self.bad_norms, bad.shape), rng.uniform(*self.good_norms, bad.shape))
                descriptors.append(self._embed(np.where(bad[:, None], bad_z, good_z)) * norms[:, None])
                order.append({"track_id": track, "person_id": ids[p]})
                frames += [{"person_id": ids[p], "video_id": video, "track_id": track, "frame_id": f,
                            "is_val": bool(is_val[p])} for f in range(self.frames_per_track)]
        return {"frames": pd.DataFrame(frames), "descriptors": np.concatenate(descriptors).astype(np.float32),
                "order": pd.DataFrame(order), "gt": gt,
                "gt_descriptors": refs.reshape(-1, DIM).astype(np.float32)}
