"""`facelab.cluster.connect`: the embedded Ray starts with Ray Train's one-machine settings (a
value the user set wins); joining a cluster sets nothing. Ray itself is not started here."""

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
    assert started["env"] == {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "3"}


def test_joining_a_cluster_keeps_rays_defaults(started):
    connect("ray://head:10001")
    assert started["kwargs"]["address"] == "ray://head:10001"
    assert started["env"] == {key: None for key in EMBEDDED_RAY_ENV}
