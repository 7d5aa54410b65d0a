"""Connect to Ray: an existing cluster (--address / RAY_ADDRESS) or an embedded local one."""

from __future__ import annotations

import logging
import os


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
        # "local" always starts a fresh embedded Ray, never a stale `ray start` cluster on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    return ray
