"""Fault tolerance in-process: a shard actor killed mid-burst restarts and its batches are retried; store locks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import numpy as np
import pytest
from conftest import raymap_actors

pytestmark = pytest.mark.ray
# 8 units of 1,024 rows, so a kill after the first commit lands with units still in flight.
PARAMS = {"k": 10, "n_shards": 1, "memory_budget": "4MiB"}


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    from raymap import datasets

    return datasets.cell_atlas(
        tmp_path_factory.mktemp("medium"), n_ref=6_000, n_query=8_192, dim=32, formats=("parquet",), chunk_rows=2_048
    )


@pytest.fixture(scope="module")
def uninterrupted(ray_cluster, medium, tmp_path_factory):
    import raymap

    out = tmp_path_factory.mktemp("uninterrupted") / "m.zarr"
    return raymap.map(str(medium.query["parquet"]), str(medium.reference["parquet"]), str(out), **PARAMS)


def _actor_handle(actor_id: str):
    """A handle on a live actor this driver owns, from its id (the pool keeps its handles private)."""
    import ray

    return ray._private.worker.global_worker.core_worker.get_actor_handle(ray.ActorID.from_hex(actor_id))


def test_shard_actor_killed_mid_burst_restarts_with_identical_output(ray_cluster, medium, uninterrupted, tmp_path):
    from ray._private import state

    import raymap

    killed: list[str] = []

    def kill_a_shard_worker(phase: str, done: int, total: int) -> None:
        if phase == "search" and 0 < done < total and not killed:
            live = [
                i for i, a in state.actors().items() if a["ActorClassName"] == "ShardWorker" and a["State"] == "ALIVE"
            ]
            ray_cluster.kill(_actor_handle(live[0]), no_restart=False)
            killed.append(live[0])

    out = tmp_path / "m.zarr"
    result = raymap.map(
        str(medium.query["parquet"]), str(medium.reference["parquet"]), str(out), **PARAMS, progress=kill_a_shard_worker
    )
    assert killed, "the burst finished before a unit was committed"
    assert state.actors()[killed[0]]["NumRestarts"] >= 1
    for name in ("neighbors/indices", "neighbors/distances", "mapping/data"):
        np.testing.assert_array_equal(result.store.array(name)[:], uninterrupted.store.array(name)[:], err_msg=name)
    deadline = time.monotonic() + 30  # the pool's kills reach the GCS asynchronously
    while raymap_actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert raymap_actors() == []


def test_a_live_lock_refuses_a_second_writer(ray_cluster, medium, tmp_path):
    import raymap
    from raymap.store import StoreLock, StoreLockedError

    out = tmp_path / "m.zarr"
    with StoreLock(out), pytest.raises(StoreLockedError, match=r"m\.zarr\.lock: store is being written by pid \d+"):
        raymap.map(str(medium.query["parquet"]), str(medium.reference["parquet"]), str(out), **PARAMS)
    assert not out.exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    """What lets a job resume after its driver was SIGKILLed (shown end to end in test_jobs.py)."""
    from raymap.store import StoreLock

    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / "m.zarr.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with StoreLock(tmp_path / "m.zarr"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
