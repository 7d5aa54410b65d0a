"""fit_torch's validation batches: read from the split's shard once and kept while they fit,
read every epoch when they do not, and never changed by what an epoch's evaluate does."""

import pytest
import ray.train
import torch

from facelab.torch_train import ValidationBatches


class Shard:
    """A validation shard that counts its passes (what `ray.train.get_dataset_shard` returns)."""

    def __init__(self, rows: int, batch_size: int):
        self.rows, self.batch_size, self.passes = rows, batch_size, 0

    def iter_torch_batches(self, batch_size, device):
        assert batch_size == self.batch_size
        self.passes += 1
        for start in range(0, self.rows, batch_size):
            stop = min(start + batch_size, self.rows)
            yield {"image": torch.arange(start, stop, dtype=torch.float32), "label": torch.arange(start, stop)}


@pytest.fixture
def shard(monkeypatch):
    made = Shard(rows=10, batch_size=4)
    monkeypatch.setattr(ray.train, "get_dataset_shard", lambda name: made if name == "val" else None)
    return made


def _labels(batches) -> list[int]:
    return [int(v) for batch in batches for v in batch["label"]]


def test_small_split_is_read_once_and_every_epoch_sees_it_unchanged(shard):
    batches = ValidationBatches({"eval_batch_size": None, "batch_size": 4}, "cpu")
    first = []
    for batch in batches:
        first.append(int(batch["label"].sum()))
        batch["image"] = batch["image"] * 100  # an evaluate that replaces a column
    for _ in range(3):
        again = list(batches)
        assert [int(b["label"].sum()) for b in again] == first
        assert _labels(again) == list(range(10))
        assert all(float(b["image"].max()) < 10 for b in again)
    assert shard.passes == 1


def test_a_split_over_the_limit_is_read_every_epoch(shard):
    batches = ValidationBatches({"eval_batch_size": 4, "batch_size": 8}, "cpu", max_bytes=100)
    for _ in range(3):
        assert _labels(batches) == list(range(10))
    assert shard.passes == 3


def test_a_pass_stopped_early_keeps_nothing(shard):
    batches = ValidationBatches({"eval_batch_size": None, "batch_size": 4}, "cpu")
    next(iter(batches))
    assert _labels(batches) == list(range(10))
    assert _labels(batches) == list(range(10))
    assert shard.passes == 2
