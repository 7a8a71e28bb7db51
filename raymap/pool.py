"""ShardPool: index-shard actors that exist for one computation burst, fed block descriptors.

Each work unit is a row range equal to one store chunk. Actors read the query rows
themselves, search, and (when one actor holds the whole index) write their own chunk;
only ``(start, stop)`` goes out and a few statistics come back, so no embedding or result
bytes cross the driver (FIELD-NOTES.md: 1.07x a plain faiss loop, flat memory).
With the index split over several actors, each unit fans out to all of them and their
top-k lists go actor-to-actor to a TopKReducer, which merges and writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from raymap.index import IndexManifest, load_searcher
from raymap.kernels import Stats, parse_kernel, unit_stats, weigh
from raymap.sources import EmbeddingSource
from raymap.store import MappingStore
from raymap.topk import drop_self, merge_topk

log = logging.getLogger(__name__)
ACTOR_CLASSES = ("ShardWorker", "TopKReducer")  # raymap's actors, by class name


def weigh_unit(store: MappingStore, start: int, stop: int, kernel: str, param: float) -> int:
    """Second pass over one unit: stored distances -> row-normalised weights. Returns empty rows."""
    _, distances = store.neighbors(start, stop)
    weights, empty = weigh(parse_kernel(kernel), distances, param)
    store.write_weights(start, weights)
    return int(empty.sum())


def finish_unit(
    store: MappingStore, start: int, row_ids: np.ndarray, dist: np.ndarray, ids: np.ndarray, k: int, exclude_self: bool
) -> Stats:
    """Drop self-matches if asked, write the unit's neighbours, return its distance statistics."""
    if exclude_self:
        dist, ids = drop_self(dist, ids, row_ids)
    dist, ids = dist[:, :k], ids[:, :k]
    store.write_neighbors(start, ids, dist)
    return unit_stats(dist)


class _IdleTimer:
    """Kills the actor after ``ttl_s`` without calls: the safety net if a driver forgets a pool."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._timer: threading.Timer | None = None
        self.touch()

    def touch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.ttl_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @staticmethod
    def _expire() -> None:
        import ray

        log.warning("raymap actor idle too long; exiting")
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


class _StoreWriter:
    """Opens the output store at first use, so actors can start while the driver still creates it."""

    store_path: str

    @cached_property
    def store(self) -> MappingStore:
        return MappingStore(self.store_path, mode="r+")


class ShardWorker(_StoreWriter):
    """Holds one or more index shards, loaded from their files (so a restart rebuilds it)."""

    def __init__(
        self,
        manifest: IndexManifest,
        shard_ids: list[int],
        query: EmbeddingSource,
        store_path: str,
        k: int,
        exclude_self: bool,
        nprobe: int | None,
        backend: str,
        threads: int,
        idle_ttl_s: float,
    ) -> None:
        from raymap.index import choose_backend

        self.born = time.perf_counter()
        backend = choose_backend(backend, manifest.factory)
        self.searchers = [
            load_searcher(
                manifest.shard_path(i),
                manifest.shards[i].row_start,
                manifest.metric,
                nprobe,
                backend,
                threads,
            )
            for i in shard_ids
        ]
        self.query, self.k, self.exclude_self = query, k, exclude_self
        self.store_path = store_path
        self.backend = backend
        self.idle = _IdleTimer(idle_ttl_s)
        self.busy_s = time.perf_counter() - self.born  # loading the shards counts as work

    def ready(self) -> str:
        return self.backend

    def usage(self) -> tuple[float, float]:
        """Seconds alive and seconds working: the idle share of a (scarce, shared) GPU actor."""
        return time.perf_counter() - self.born, self.busy_s

    @contextmanager
    def _working(self) -> Iterator[None]:
        self.idle.touch()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.busy_s += time.perf_counter() - t0

    def _search(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        xq = self.query.read(start, stop)
        k = self.k + int(self.exclude_self)
        results = [s.search(xq, k) for s in self.searchers]
        return merge_topk([d for d, _ in results], [i for _, i in results], k)

    def search(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """This actor's top-k (over its shards) for query rows ``[start, stop)``: for the reducer."""
        with self._working():
            return self._search(start, stop)

    def search_write(self, start: int, stop: int) -> Stats:
        """Whole index here: search, write the chunk, return only statistics."""
        with self._working():
            dist, ids = self._search(start, stop)
            return finish_unit(self.store, start, np.arange(start, stop), dist, ids, self.k, self.exclude_self)

    def weigh_write(self, start: int, stop: int, kernel: str, param: float) -> int:
        with self._working():
            return weigh_unit(self.store, start, stop, kernel, param)


class TopKReducer(_StoreWriter):
    """Merges the per-actor top-k lists of a unit into the global top-k and writes it in place."""

    def __init__(self, store_path: str, k: int, exclude_self: bool, idle_ttl_s: float) -> None:
        self.store_path = store_path
        self.k, self.exclude_self = k, exclude_self
        self.idle = _IdleTimer(idle_ttl_s)

    def ready(self) -> str:
        return "reducer"

    def merge_write(self, start: int, stop: int, *parts: tuple[np.ndarray, np.ndarray]) -> Stats:
        self.idle.touch()
        dist, ids = merge_topk([p[0] for p in parts], [p[1] for p in parts], self.k + int(self.exclude_self))
        return finish_unit(self.store, start, np.arange(start, stop), dist, ids, self.k, self.exclude_self)

    def weigh_write(self, start: int, stop: int, kernel: str, param: float) -> int:
        self.idle.touch()
        return weigh_unit(self.store, start, stop, kernel, param)


@dataclass(frozen=True, slots=True)
class PoolPlan:
    """How a burst is laid out: shard groups (one actor each) and replicas of the whole index."""

    groups: list[list[int]]  # shard ids per actor; one group means replicas each hold the whole index
    replicas: int
    threads: int
    num_cpus: float
    num_gpus: float

    @property
    def fan_out(self) -> bool:
        return len(self.groups) > 1


def plan_pool(
    manifest: IndexManifest,
    shard_bytes: list[int],
    memory_budget: int,
    total_cpus: int,
    node_cpus: int,
    total_gpus: int,
    shards_per_actor: int | None = None,
    replicas: int | None = None,
    max_replicas: int | None = None,
) -> PoolPlan:
    """Pure sizing rule.

    The whole index goes into each actor when it fits the memory budget (replicas then split
    the units); otherwise shards are grouped so each actor's part fits, and units fan out.
    CPU: one replica per up to 8 cores of a node (faiss threads inside); GPU: one per GPU.
    """
    n = len(manifest.shards)
    if shards_per_actor is None:
        per = n if sum(shard_bytes) <= memory_budget else max(1, memory_budget // max(shard_bytes))
    else:
        per = max(1, min(shards_per_actor, n))
    groups = [list(range(s, min(s + per, n))) for s in range(0, n, per)]
    threads = max(1, min(node_cpus, 8))
    slots = total_gpus or max(1, total_cpus // threads)
    reps = 1 if len(groups) > 1 else max(1, replicas or min(slots, max_replicas or slots))
    n_actors = len(groups) * reps
    # Shares of a CPU/GPU when more actors than devices must coexist (one actor per shard group):
    # whole-unit requests would leave some actors unschedulable and the burst would wait forever.
    # On CPU one CPU is reserved per actor while faiss runs `threads` threads: reserving every core
    # would starve any other task of the cluster (FIELD-NOTES.md deadlock trap).
    if total_gpus:
        num_cpus, num_gpus = min(1.0, total_cpus / n_actors), min(1.0, total_gpus / n_actors)
    else:
        num_cpus, num_gpus = min(1.0, total_cpus / n_actors), 0.0
        threads = max(1, min(threads, total_cpus // min(n_actors, total_cpus)))
    return PoolPlan(groups, reps, threads, num_cpus, num_gpus)


class ShardPool:
    """Context manager: actors exist inside the ``with`` block only, killed on exit (success or error)."""

    def __init__(
        self,
        plan: PoolPlan,
        manifest: IndexManifest,
        query: EmbeddingSource,
        store_path: str,
        k: int,
        exclude_self: bool,
        nprobe: int | None,
        backend: str = "auto",
        in_flight: int = 2,
        idle_ttl_s: float = 900.0,
        start_timeout_s: float = 600.0,
    ) -> None:
        self.plan, self.manifest, self.query = plan, manifest, query
        self.store_path, self.k, self.exclude_self, self.nprobe = (
            store_path,
            k,
            exclude_self,
            nprobe,
        )
        self.backend, self.in_flight, self.idle_ttl_s = backend, in_flight, idle_ttl_s
        self.start_timeout_s = start_timeout_s
        self.workers: list[Any] = []
        self.reducer: Any = None
        self._ready = False
        self.usage: dict[str, float] = {}  # shard actors' alive/busy seconds, filled on exit

    def __enter__(self) -> ShardPool:
        """Create the actors without waiting for them; the first search or weigh call waits."""
        import ray

        opts = {
            "num_cpus": self.plan.num_cpus,
            "num_gpus": self.plan.num_gpus,
            "max_restarts": 3,
            "max_task_retries": 3,
        }
        worker_cls = ray.remote(ShardWorker)
        try:
            for group in self.plan.groups * self.plan.replicas:
                self.workers.append(
                    worker_cls.options(**opts).remote(
                        self.manifest,
                        group,
                        self.query,
                        self.store_path,
                        self.k,
                        self.exclude_self,
                        self.nprobe,
                        self.backend,
                        self.plan.threads,
                        self.idle_ttl_s,
                    )
                )
            if self.plan.fan_out:
                self.reducer = (
                    ray.remote(TopKReducer)
                    .options(num_cpus=0, max_restarts=3, max_task_retries=3)
                    .remote(self.store_path, self.k, self.exclude_self, self.idle_ttl_s)
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    def _await_ready(self) -> None:
        """Block until every actor has loaded its shards (once); actors boot while the driver works."""
        import ray

        if self._ready:
            return
        try:
            # Generous: an autoscaler may have to start GPU nodes for these actors first.
            backends = ray.get([w.ready.remote() for w in self.workers], timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(
                f"shard pool: {len(self.workers)} actor(s) needing {self.plan.num_cpus} CPU and "
                f"{self.plan.num_gpus} GPU each were not scheduled within {self.start_timeout_s:.0f} s; "
                f"cluster resources: {ray.cluster_resources()}"
            ) from None
        self._ready = True
        log.info(
            "shard pool: %d actor(s) %s, backend %s, %d thread(s) each%s",
            len(self.workers),
            self.plan.groups,
            backends[0],
            self.plan.threads,
            " + reducer" if self.reducer else "",
        )

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._ready:
            self._record_usage()
        for actor in [*self.workers, self.reducer]:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        self.workers, self.reducer = [], None

    def _record_usage(self) -> None:
        """Sum the shard actors' alive and busy time; an actor already gone just is not counted."""
        import ray

        try:
            pairs = ray.get([w.usage.remote() for w in self.workers], timeout=30)
        except ray.exceptions.RayError:
            return
        alive, busy = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        self.usage = {
            "actor_alive_s": round(alive, 3),
            "actor_busy_s": round(busy, 3),
            "actor_idle_share": round(max(0.0, 1 - busy / alive), 4) if alive else 0.0,
        }

    def search(self, units: list[tuple[int, int, int]], on_done: Callable[[int, Any], None]) -> None:
        """Search and write every ``(unit, start, stop)``; ``on_done(unit, stats)`` commits each."""
        self._await_ready()
        if self.plan.fan_out:
            self._drive(
                units,
                lambda _, s, e: self.reducer.merge_write.remote(s, e, *[w.search.remote(s, e) for w in self.workers]),
                on_done,
                slots=1,
            )
        else:
            self._drive(
                units, lambda w, s, e: self.workers[w].search_write.remote(s, e), on_done, slots=len(self.workers)
            )

    def weigh(
        self, units: list[tuple[int, int, int]], kernel: str, param: float, on_done: Callable[[int, Any], None]
    ) -> None:
        """Second pass: weights from stored distances, on the actors that are already up."""
        self._await_ready()
        targets = [self.reducer] if self.plan.fan_out else self.workers
        self._drive(
            units, lambda w, s, e: targets[w].weigh_write.remote(s, e, kernel, param), on_done, slots=len(targets)
        )

    def _drive(
        self,
        units: list[tuple[int, int, int]],
        submit: Callable[[int, int, int], Any],
        on_done: Callable[[int, Any], None],
        slots: int,
    ) -> None:
        """A work queue with ``in_flight`` units per slot; results are handled as they finish."""
        import ray

        queue = list(reversed(units))
        pending: dict[Any, tuple[int, int]] = {}  # ref -> (unit, slot)
        load = [0] * slots
        while queue or pending:
            while queue and min(load) < self.in_flight:
                slot = int(np.argmin(load))
                unit, start, stop = queue.pop()
                pending[submit(slot, start, stop)] = (unit, slot)
                load[slot] += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            unit, slot = pending.pop(done[0])
            load[slot] -= 1
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                raise e.as_instanceof_cause() from None
            on_done(unit, result)
