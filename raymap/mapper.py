"""map(): query + reference -> index -> shard-actor burst -> neighbour/weight store -> transfer."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from raymap._parse import parse_bytes, parse_positive_int
from raymap.crossmap import JOINT_KERNELS, map_joint
from raymap.index import IndexSpec, build_index
from raymap.kernels import KERNELS, bandwidth, merge_stats, parse_kernel
from raymap.pool import PoolPlan, ShardPool, plan_pool
from raymap.result import MappingResult
from raymap.sources import EmbeddingSource, Filter, open_source
from raymap.store import MappingStore, StoreExistsError, StoreLock

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # phase, rows done, rows total
MIN_UNIT_ROWS, MAX_UNIT_ROWS = 1_024, 65_536
# Attributes that must match for resume=True to continue an existing store.
RESUME_KEYS = (
    "k",
    "kernel",
    "metric",
    "exclude_self",
    "query_fingerprint",
    "reference_fingerprint",
    "index_factory",
    "n_query",
    "n_reference",
    "chunk_rows",
)


def unit_rows_for(memory_budget: int, dim: int, k: int, n_in_flight: int, n_query: int) -> int:
    """Rows per work unit (= store chunk) so every in-flight unit fits the budget.

    Per row in flight: the float32 query row (twice: Arrow buffer + copy), k+1 candidates per
    shard group as float32 + int64 (x3: search output, merge, write), and faiss scratch ~ 4·k.
    Rounded down to a power of two within [1024, 65536].
    """
    per_row = 2 * 4 * dim + 3 * (k + 1) * 12 + 16 * k
    rows = memory_budget // max(1, per_row * n_in_flight)
    rows = 1 << max(0, int(rows).bit_length() - 1)
    return int(min(max(rows, MIN_UNIT_ROWS), MAX_UNIT_ROWS, max(n_query, 1)))


def _same_source(query: Any, reference: Any) -> bool:
    if reference is None or reference is query:
        return True
    if isinstance(query, str | os.PathLike) and isinstance(reference, str | os.PathLike):
        return os.path.realpath(query) == os.path.realpath(reference)
    return False


def map(
    query: Any,
    reference: Any = None,
    out: str | os.PathLike[str] = "mapping.zarr",
    *,
    k: int = 30,
    kernel: str = "gauss",
    index: str = "auto",
    metric: str = "l2",
    nprobe: int | None = None,
    n_shards: int | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    memory_budget: int | str = "2GiB",
    exclude_self: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    transfer: dict[str, Any] | None = None,
    query_filter: Filter = None,
    reference_filter: Filter = None,
    column: str = "emb",
    use_rep: str = "X_pca",
    shards_per_actor: int | None = None,
    replicas: int | None = None,
    validate: bool = True,
    progress: Progress | None = None,
) -> MappingResult:
    """Map ``query`` onto ``reference`` out of core and return a lazy :class:`MappingResult`.

    Parameters
    ----------
    query, reference
        Paths (Parquet file/dataset, zarr, .h5ad, .npy), numpy arrays, AnnData or sources.
        ``reference=None`` (or the same input) self-maps; ``exclude_self`` drops each row itself.
    out
        The zarr store to write. Existing stores are refused unless ``overwrite`` or ``resume``.
    k, kernel, metric
        Neighbours per query row; distance kernel (:data:`raymap.kernels.KERNELS`, or a joint
        kernel ``jaccard``/``hnoca`` built from four maps: :func:`raymap.crossmap.map_joint`); ``l2`` or ``cosine``.
    index, nprobe, n_shards, index_dir, backend
        faiss factory string or ``auto``; probes (tuned for recall >= 0.95 when None); shard count
        (from the memory budget when None); where the index lives (``<out>.index``); search backend.
    memory_budget
        Bounds work-unit size and the index held per actor: peak memory does not grow with the query.
    resume
        Continue a killed job: committed units are kept, the rest are computed; same output.
    transfer
        ``{column: "categorical" | "numeric"}`` over the reference's metadata, run after mapping.
    """
    if kernel in JOINT_KERNELS:  # four maps (xx, yy, xy, yx) combined into one kernel graph
        return map_joint(**locals())
    t0 = time.perf_counter()
    k = parse_positive_int(k, "k")
    kern = parse_kernel(kernel)
    spec = IndexSpec(factory=index, metric=metric, nprobe=nprobe, backend=backend)
    budget = parse_bytes(memory_budget)
    if overwrite and resume:
        raise ValueError("pass overwrite=True or resume=True, not both")
    self_map = _same_source(query, reference) and reference_filter is None
    if kern.self_only and not self_map:
        raise ValueError(
            f"kernel {kern.name!r} is defined for self-mapping only (reference=None or the query itself); "
            f"for query -> reference use one of {sorted(name for name, v in KERNELS.items() if not v.self_only)}"
        )
    q = open_source(query, column=column, use_rep=use_rep, filter=query_filter)
    r = q if self_map else open_source(reference, column=column, use_rep=use_rep, filter=reference_filter)
    exclude_self = exclude_self and self_map
    if q.dim != r.dim:
        raise ValueError(
            f"dimension mismatch: query {q.describe()} has dim {q.dim}, reference {r.describe()} has dim {r.dim}"
        )
    available = r.n_rows - int(exclude_self)
    if k > available:
        raise ValueError(
            f"k={k} exceeds the {available} reference rows available" + (" (self excluded)" if exclude_self else "")
        )
    out = os.fspath(out)
    if os.path.exists(out) and not (overwrite or resume):
        raise StoreExistsError(f"output store exists: {out}; pass overwrite=True to replace it or resume=True")
    if transfer:
        from raymap.transfer import parse_transfer

        parse_transfer(transfer, r)  # fail on a bad transfer spec before any work
    if validate:
        q.check_finite()
    from raymap.runtime import cluster_shape, ensure_ray

    ensure_ray()
    with StoreLock(out):
        index_dir = os.fspath(index_dir or f"{out.rstrip('/')}.index")
        n_shards = n_shards or max(1, math.ceil(r.n_rows * r.dim * 4 / (budget / 2)))
        manifest = build_index(
            r, index_dir, spec, n_shards=n_shards, k=k, tuning_source=q, memory_budget=budget, overwrite=overwrite
        )
        total_cpus, node_cpus, gpus = cluster_shape()
        plan = plan_pool(
            manifest,
            [os.path.getsize(manifest.shard_path(i)) for i in range(len(manifest.shards))],
            budget // 2,
            total_cpus,
            node_cpus,
            gpus,
            shards_per_actor,
            replicas,
            max_replicas=-(-q.n_rows // MIN_UNIT_ROWS),  # never more replicas than the query has units
        )
        nprobe = nprobe or manifest.nprobe
        pool = ShardPool(plan, manifest, q, out, k, exclude_self, nprobe, backend)
        # The actors boot (process, imports, shard load: seconds) while this driver fingerprints
        # the inputs and creates the store; nothing is started when a resumed store is complete.
        with contextlib.nullcontext(None) if resume and _complete(out) else pool as running:
            attrs: dict[str, Any] = {
                "k": k,
                "kernel": kern.name,
                "metric": metric,
                "exclude_self": exclude_self,
                "query_fingerprint": q.fingerprint(),
                "reference_fingerprint": r.fingerprint(),
                "query": q.describe(),
                "reference": r.describe(),
                "self_mapping": self_map,
                "index_factory": manifest.factory,
                "index_dir": index_dir,
                "nprobe": nprobe,
                "index_recall": manifest.recall,
                "n_query": q.n_rows,
                "n_reference": r.n_rows,
            }
            store = _open_store(out, q, r, k, attrs, plan, budget, resume, overwrite)
            if running is not None:
                _run_burst(store, running, q, kern.name, progress)
        if running is not None:  # after the pool's exit, which measured its actors' busy share
            store.group.attrs["seconds"] = round(time.perf_counter() - t0, 3)
            store.group.attrs["pool"] = {
                "actors": len(plan.groups) * plan.replicas,
                "groups": plan.groups,
                "threads": plan.threads,
                "num_gpus": plan.num_gpus,
                **pool.usage,
            }
    result = MappingResult(out)
    if transfer:
        result.transfer(transfer, reference=r)
    return result


def _open_store(
    out: str,
    q: EmbeddingSource,
    r: EmbeddingSource,
    k: int,
    attrs: dict[str, Any],
    plan: PoolPlan,
    budget: int,
    resume: bool,
    overwrite: bool,
) -> MappingStore:
    in_flight = 2 * (1 if plan.fan_out else plan.replicas) * max(1, len(plan.groups))
    if resume and os.path.exists(out):
        store = MappingStore(out, mode="r+")
        have = store.attrs
        diff = {
            key: (have.get(key), attrs.get(key)) for key in RESUME_KEYS if key in attrs and have.get(key) != attrs[key]
        }
        if diff:
            raise ValueError(
                f"{out}: cannot resume, the existing store was made with other inputs or "
                f"parameters: {diff} (stored, requested)"
            )
        log.info(
            "resuming %s: %d of %d units already committed", out, len(store.committed("search")), len(store.units())
        )
        return store
    chunk_rows = unit_rows_for(budget, q.dim, k, in_flight, q.n_rows)
    attrs = {**attrs, "chunk_rows": chunk_rows}
    return MappingStore.create(out, q.n_rows, r.n_rows, k, chunk_rows, attrs, overwrite=overwrite)


def _complete(out: str) -> bool:
    """True when a store at ``out`` has every unit committed in both passes (resume: nothing to do)."""
    if not os.path.exists(out):
        return False
    store = MappingStore(out)
    n_units = len(store.units())
    return len(store.committed("search")) == n_units and len(store.committed("weights")) == n_units


def _run_burst(
    store: MappingStore, pool: ShardPool, q: EmbeddingSource, kernel: str, progress: Progress | None
) -> None:
    """Both passes inside one pool lifetime: search (+ statistics), then weights."""
    units = store.units()
    kern = parse_kernel(kernel)

    def tracker(phase: str) -> Callable[[int, Any], None]:
        done = {"rows": sum(units[u][1] - units[u][0] for u in store.committed(phase))}
        if progress:  # phase start: rows already committed (resume) and a time origin for rates
            progress(phase, done["rows"], q.n_rows)

        def on_done(unit: int, result: Any) -> None:
            store.commit(phase, unit, result if phase == "search" else (float(result), 0.0, 0.0))
            done["rows"] += units[unit][1] - units[unit][0]
            if progress:
                progress(phase, done["rows"], q.n_rows)

        return on_done

    todo_search = [(u, s, e) for u, (s, e) in enumerate(units) if u not in store.committed("search")]
    todo_weights = [(u, s, e) for u, (s, e) in enumerate(units) if u not in store.committed("weights")]
    pool.search(todo_search, tracker("search"))
    stats = merge_stats(store.committed("search").values())
    param = bandwidth(kern, stats)
    store.group.attrs.update(
        {
            "kernel_param": param,
            "distance_mean": stats[1],
            "distance_std": math.sqrt(stats[2] / stats[0]) if stats[0] else 0.0,
        }
    )
    pool.weigh(todo_weights, kern.name, param, tracker("weights"))
    store.group.attrs["empty_rows"] = int(sum(v[0] for v in store.committed("weights").values()))
