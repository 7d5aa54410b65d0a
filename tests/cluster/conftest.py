"""The clusters of the multi-node tests (`make test-cluster`): see local_cluster.py."""

import pytest

from local_cluster import local_cluster


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """A head node (`ray start --head`, 1 CPU) and a second worker node (1 CPU): (dashboard address, env)."""
    with local_cluster(tmp_path_factory, 1, [1]) as cluster:
        yield cluster.address, cluster.env


@pytest.fixture(scope="module")
def node_loss_cluster(tmp_path_factory):
    """A head (1 CPU: drivers, Train controllers, Tune trial drivers, Ray Data preparation) and two
    worker nodes of 2 CPUs each, so that either one alone can take all the work of both."""
    with local_cluster(tmp_path_factory, 1, [2, 2]) as cluster:
        yield cluster
