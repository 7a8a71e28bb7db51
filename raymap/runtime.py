"""Connecting to Ray: an existing cluster when one is named, else a lean embedded local one."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
AUTOSCALE_GPUS_ENV = "RAYMAP_AUTOSCALE_GPUS"


def ensure_ray(num_cpus: int | None = None, num_gpus: int | None = None, temp_dir: str | None = None) -> None:
    """Start or join Ray once per process.

    ``RAY_ADDRESS`` (set by ``ray job submit`` and by users) joins that cluster. Otherwise a
    local cluster starts with the lean settings measured in FIELD-NOTES.md (no dashboard,
    small object store: raymap moves descriptors, not embeddings, through it). ``temp_dir``
    (or ``RAYMAP_RAY_TEMP_DIR``) keeps several local clusters on one machine apart.
    """
    import ray

    # Ray's tqdm_ray replaces builtins.print in the driver once a worker reports a progress bar;
    # numba then cannot compile functions that call print (umap-learn/pynndescent fail after Ray Data ran).
    # Read when the first bar appears, so it also protects a Ray the caller started.
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local clusters only; set on the head too
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        log.info("joining Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=True)
        return
    log.info("starting an embedded local Ray (num_cpus=%s)", num_cpus or os.cpu_count())
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        log_to_driver=True,
        _temp_dir=temp_dir or os.environ.get("RAYMAP_RAY_TEMP_DIR"),
        _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False},
    )


def cluster_shape() -> tuple[int, int, int]:
    """``(total CPUs, CPUs of the biggest node, total GPUs)`` of the live cluster."""
    import ray

    total = ray.cluster_resources()
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    # An autoscaling cluster may have no GPU node up yet; its config names how many GPUs it can add
    # (cluster.yaml), and the shard actors' num_gpus requests are what make it add them.
    return int(total.get("CPU", 1)), max(node_cpus or [1]), max(int(total.get("GPU", 0)), autoscale_gpus())


def autoscale_gpus() -> int:
    """GPUs the cluster may add on demand (``RAYMAP_AUTOSCALE_GPUS``, set in cluster.yaml); 0 when unset."""
    text = os.environ.get(AUTOSCALE_GPUS_ENV, "0").strip()
    if not text.isdigit():
        raise ValueError(f"{AUTOSCALE_GPUS_ENV} must be a number of GPUs >= 0, got {text!r}")
    return int(text)
