"""The training datasets' blocks: one per preparation task the cluster runs at once, within the
bounds, every row kept once."""

import math

import pandas as pd
import pytest
import ray

from facelab.torch_train import PREPARE_CPUS
from facelab.vision import MAX_BLOCK_ROWS, MIN_BLOCK_ROWS, block_rows, training_datasets


def test_block_rows_fill_every_preparation_task_within_the_bounds(ray_local):
    tasks = int(ray.cluster_resources()["CPU"] / PREPARE_CPUS)
    assert block_rows(10) == MIN_BLOCK_ROWS
    assert block_rows(tasks * 250) == 250
    assert block_rows(10**6) == MAX_BLOCK_ROWS


@pytest.mark.parametrize("rows", [150, 1000])
def test_training_datasets_keep_every_row_in_blocks_of_that_size(ray_local, rows):
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(rows)], "label": range(rows)})
    datasets = training_datasets(ray.data.from_pandas(frame), ray.data.from_pandas(frame.head(40)), seed=1)
    train = datasets["train"].materialize()
    assert sorted(train.to_pandas()["label"]) == list(range(rows))
    assert train.num_blocks() == math.ceil(rows / block_rows(rows))
    assert len(datasets["val"].take_all()) == 40
