"""Connect to Ray: an existing cluster (--address / RAY_ADDRESS) or an embedded local one."""

from __future__ import annotations

import logging
import os

# Ray Train settings for the embedded Ray, which is one machine: no node of it can be preempted, so
# Train's preemption watcher (an actor started for every run) is off, and Train's controller polls
# its workers every 0.5 s rather than 2 s (a finished run was noticed up to 2 s late). Each fit of a
# small model took 6-8 s less (emotion, 3 epochs: 31-33 s -> 24.5 s). These are environment
# variables Ray Train reads (ray/train/v2/_internal/constants.py), not documented API: a Ray that
# renames them ignores them.
# The raylet keeps an idle worker process 60 s rather than 1 s (Ray's default; the raylet reads
# RAY_<name> for its settings): a fit's Ray Data tasks and the next fit's, a sweep's trials, a job's
# read tasks and its predictor actors then reuse processes that have imported torch and facelab
# already instead of starting new ones. The second of two emotion fits in one Ray: materialising
# the validation split 3.4 -> 0.2 s, its first training batch 6.3 -> 2.5 s after the model was
# built (/work/runs profile, 2026-12-07). The price: idle workers' memory for up to a minute.
# A value already in the environment wins; clusters keep Ray's defaults.
EMBEDDED_RAY_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
                    "RAY_idle_worker_killing_time_threshold_ms": "60000"}


def connect(address: str | None = None, *, quiet: bool = False, num_cpus: int | None = None):
    """ray.init for jobs: joins `address` (or $RAY_ADDRESS) when given, else starts a local Ray
    with `num_cpus` CPUs ($FACELAB_NUM_CPUS when not given; default: every CPU of this machine).

    Inside `ray job submit` the job driver finds its cluster through RAY_ADDRESS itself.
    """
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"ignore_reinit_error": True, "logging_level": logging.WARNING}
    if quiet:
        kwargs["log_to_driver"] = False
    if num_cpus is None and os.environ.get("FACELAB_NUM_CPUS"):
        num_cpus = int(os.environ["FACELAB_NUM_CPUS"])
    if address:
        ray.init(address=address, **kwargs)
    else:
        for key, value in EMBEDDED_RAY_ENV.items():  # before ray.init: its processes inherit them
            os.environ.setdefault(key, value)
        # "local" always starts a fresh embedded Ray, never a stale `ray start` cluster on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    return ray
