"""Heavy exploration steps as Ray tasks: one GPU when the cluster has one, CPUs otherwise, released on return."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# CPUs a CPU-only step asks for (its BLAS/faiss/numba threads), capped by the biggest node.
STEP_CPUS = 4


def cuda_device_count() -> int:
    """CUDA devices this process can really use (CuPy's view; 0 without CuPy or a driver)."""
    try:
        import cupy
    except ImportError:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


def threads() -> int:
    """Threads a step may use: ``OMP_NUM_THREADS`` when set (Ray sets it to a task's CPUs), else all cores."""
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def step_options(total_gpus: float, node_cpus: int) -> dict[str, float]:
    """Ray resources for one step: a whole GPU when the cluster has any, else up to ``STEP_CPUS`` CPUs.

    Ray runs a GPU task in a worker that exits afterwards (``max_calls=1`` is its default
    for GPU tasks), so the card is free again as soon as the step returns.
    """
    if total_gpus >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_gpus": 0, "num_cpus": max(1, min(STEP_CPUS, node_cpus))}


def _call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return fn(*args, **kwargs)


def run_step(fn: Callable[..., T], *args: Any, use_ray: bool = False, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in this process, or as a Ray task sized by :func:`step_options`.

    Arguments and results travel through the object store, so steps take source descriptors
    and row ids and return labels/coordinates, never embedding blocks.
    """
    if not use_ray:
        return fn(*args, **kwargs)
    import ray

    from raymap.runtime import cluster_shape, ensure_ray

    ensure_ray()
    _, node_cpus, gpus = cluster_shape()
    options = step_options(gpus, node_cpus)
    log.info("running %s as a Ray task with %s", getattr(fn, "__name__", fn), options)
    task: Any = ray.remote(_call).options(name=f"raymap-explore-{getattr(fn, '__name__', 'step')}", **options)
    return ray.get(task.remote(fn, args, kwargs))
