"""`facelab.cluster.connect`: the embedded Ray starts with Ray Train's one-machine settings and
keeps idle worker processes (a value the user set wins); joining a cluster sets nothing. Ray is
started only by the last test (the session's embedded Ray)."""

import os

import pytest
import ray

from facelab.cluster import EMBEDDED_RAY_ENV, connect


@pytest.fixture
def started(monkeypatch):
    """What ray.init was called with and the Train settings in the environment at that moment."""
    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(
        kwargs=kwargs, env={key: os.environ.get(key) for key in EMBEDDED_RAY_ENV}))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key in EMBEDDED_RAY_ENV:
        monkeypatch.setenv(key, "restored after the test")
        monkeypatch.delenv(key)
    return seen


def test_the_embedded_ray_gets_the_one_machine_settings_and_a_users_value_wins(started, monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    connect(None)
    assert started["kwargs"]["address"] == "local"
    assert started["env"] == {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "3",
                              "RAY_idle_worker_killing_time_threshold_ms": "60000"}


def test_a_reader_called_outside_a_job_starts_the_embedded_ray(started, monkeypatch):
    """A format's reader in a notebook: sizing its blocks starts Ray as connect() would, rather
    than failing with "Ray has not been started yet"."""
    from facelab.formats.base import rows_per_block

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    assert rows_per_block(100, minimum=1) == 13  # 2 blocks per CPU of the Ray it started
    assert started["kwargs"]["address"] == "local"


def test_joining_a_cluster_keeps_rays_defaults(started):
    connect("ray://head:10001")
    assert started["kwargs"]["address"] == "ray://head:10001"
    assert started["env"] == {key: None for key in EMBEDDED_RAY_ENV}


def test_the_embedded_ray_keeps_idle_worker_processes_for_the_next_tasks(ray_local):
    """More tasks at once than CPUs start more worker processes than Ray keeps idle by default
    (one per CPU, the rest killed after 1 s idle); the embedded Ray keeps them 60 s, so the next
    round of tasks a few seconds later runs in the same processes (torch and facelab imported)."""
    import time

    @ray.remote(num_cpus=0.25)
    def pid() -> int:
        time.sleep(1.0)
        return os.getpid()

    def round_of_pids() -> set[int]:
        return set(ray.get([pid.remote() for _ in range(int(ray.cluster_resources()["CPU"] * 4))]))

    first = round_of_pids()
    time.sleep(4)  # well past Ray's default 1 s
    second = round_of_pids()
    assert len(first) > ray.cluster_resources()["CPU"]  # more processes than the default keeps
    assert second <= first, f"{len(second - first)} new worker processes: idle ones were not kept"
