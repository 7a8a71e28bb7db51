"""Joint-graph kernels (``jaccard``, ``hnoca``) from four kNN maps (xx, yy, xy, yx), combined chunk by chunk.

CellMapper's formula, on boolean adjacencies (within-set graphs xx, yy carry self edges):
``K = yx @ xxᵀ + yy @ xyᵀ``, then ``K / (4k - K)`` (``hnoca``: squared), then row normalisation.
``K[q, r]`` counts shared neighbours, so a query chunk needs the rows of xxᵀ and xyᵀ that its
neighbours point to: both transposes are built once out of core (bucketed, like
symmetrisation) and gathered per chunk; nothing dense, never the full matrix in memory.
Self-mapping uses one map for all four roles (CellMapper does the same).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from raymap._parse import parse_bytes, parse_choice
from raymap.result import MappingResult
from raymap.store import MappingStore
from raymap.transfer.buckets import EdgeBuckets, bucket_rows_for, transpose_into
from raymap.transfer.graph import CSRGraph, graph_names, open_graph
from raymap.transfer.stream import localise
from raymap.transfer.symmetrize import row_normalise

log = logging.getLogger(__name__)
JOINT_KERNELS = ("jaccard", "hnoca")


def adjacency(store: MappingStore, start: int, stop: int, self_edges: bool) -> sp.csr_matrix:
    """Boolean neighbour matrix of rows ``[start, stop)``, with each row's own id added when ``self_edges``."""
    ids = store.neighbors(start, stop)[0].astype(np.int64)
    if self_edges:
        ids = np.hstack([np.arange(start, stop, dtype=np.int64)[:, None], ids])
    n, k = ids.shape
    return sp.csr_matrix((np.ones(n * k), ids.ravel(), np.arange(n + 1) * k), shape=(n, store.n_reference))


def transpose_graph(store: MappingStore, self_edges: bool, memory_budget: int) -> CSRGraph:
    """Graph ``adjacency_t[_self]`` of ``store``: its boolean adjacency transposed, built once and kept."""
    store.require_complete()
    name = "adjacency_t_self" if self_edges else "adjacency_t"
    if name in graph_names(store) and open_graph(store, name).complete:
        return open_graph(store, name)
    shape = (store.n_reference, store.n_query)
    k = store.k + int(self_edges)
    bucket_rows = bucket_rows_for(memory_budget, store.chunk_rows, k)
    blocks = ((s, adjacency(store, s, e, self_edges)) for s, e in store.units())
    parent = os.path.dirname(os.path.abspath(store.path))
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{os.path.basename(store.path)}.transpose-") as tmp:
        buckets = EdgeBuckets(tmp, shape, bucket_rows, flush_bytes=max(1, memory_budget // 4))
        transpose_into(blocks, buckets)
        graph = CSRGraph.create(store.group, name, shape, {"chunk_rows": store.chunk_rows})
        for _, block in buckets:
            graph.append(block)
        graph.finish()
    return graph


def _shared(adj: sp.csr_matrix, transposed: CSRGraph) -> sp.csr_matrix:
    """``adj @ transposedᵀ-rows``: gather only the transposed rows the block's neighbours point to."""
    ids, local = localise(adj)
    return sp.csr_matrix(local @ transposed.take(ids))


def joint_kernel(
    yx: MappingStore,
    xx: MappingStore,
    yy: MappingStore,
    xy: MappingStore,
    kernel: str = "jaccard",
    memory_budget: int | str = "1GiB",
) -> CSRGraph:
    """Write graph ``<kernel>`` (the row-normalised joint kernel, query x reference) into ``yx``'s store.

    The store's ``attrs["operator"]`` then names it, so transfers use it by default.
    """
    parse_choice(kernel, JOINT_KERNELS, "joint kernel")
    budget = parse_bytes(memory_budget)
    self_map = len({os.path.realpath(s.path) for s in (yx, xx, yy, xy)}) == 1
    expected = {"yx": (yx.n_query, yx.n_reference), "xx": (yx.n_reference,) * 2, "yy": (yx.n_query,) * 2}
    expected["xy"] = (yx.n_reference, yx.n_query)
    for role, store in (("yx", yx), ("xx", xx), ("yy", yy), ("xy", xy)):
        store.require_complete()
        if (store.n_query, store.n_reference) != expected[role]:
            raise ValueError(
                f"joint kernel: {role} store {store.path} is {store.n_query} x {store.n_reference}, "
                f"expected {expected[role][0]} x {expected[role][1]}"
            )
    xx_t = transpose_graph(xx, True, budget)
    xy_t = xx_t if self_map else transpose_graph(xy, False, budget)
    k = yx.k
    shape = (yx.n_query, yx.n_reference)
    graph = CSRGraph.create(yx.group, kernel, shape, {"kernel": kernel, "k": k, "chunk_rows": yx.chunk_rows})
    # Per query row up to 2(k+1)² shared-neighbour products, ~40 bytes each while they are summed.
    sub_rows = max(1, int(budget // (2 * (k + 1) ** 2 * 40)))
    for start, stop in yx.units():
        for lo in range(start, stop, sub_rows):
            hi = min(lo + sub_rows, stop)
            counts = _shared(adjacency(yx, lo, hi, self_map), xx_t) + _shared(adjacency(yy, lo, hi, True), xy_t)
            counts.data = counts.data / (4 * k - counts.data)
            if kernel == "hnoca":
                counts.data **= 2
            graph.append(row_normalise(counts))
    graph.finish()
    yx.group.attrs["operator"] = kernel
    log.info("%s kernel: %d entries (%.1f per query row)", kernel, graph.nnz, graph.mean_row_nnz)
    return graph


def map_joint(
    query: Any,
    reference: Any = None,
    out: str | os.PathLike[str] = "mapping.zarr",
    *,
    kernel: str = "jaccard",
    k: int = 30,
    transfer: dict[str, Any] | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    query_filter: Any = None,
    reference_filter: Any = None,
    memory_budget: int | str = "2GiB",
    **options: Any,
) -> MappingResult:
    """``raymap.map`` with a joint kernel: the four maps it needs, then the kernel graph.

    Cross-mapping runs yx (query -> reference, k) into ``out`` and xx, yy (k - 1 others plus
    self, as CellMapper) and xy (reference -> query, k) into ``<out>.joint/``; the reference
    index is shared by yx and xx, the query index by yy and xy. Self-mapping runs one map.
    ``options`` go to every :func:`raymap.map` call.
    """
    from raymap.mapper import _same_source
    from raymap.mapper import map as map_one
    from raymap.sources import open_source
    from raymap.transfer import parse_transfer

    parse_choice(kernel, JOINT_KERNELS, "joint kernel")
    self_map = _same_source(query, reference) and reference_filter is None
    if transfer:
        column, use_rep = options.get("column", "emb"), options.get("use_rep", "X_pca")
        ref = open_source(query if self_map else reference, column=column, use_rep=use_rep, filter=reference_filter)
        parse_transfer(transfer, ref)  # fail on a bad spec before four maps
    out = os.fspath(out)
    ref_index = os.fspath(index_dir or f"{out.rstrip('/')}.index")
    base = {"kernel": "equal", "memory_budget": memory_budget, **options}
    yx = map_one(
        query,
        reference,
        out,
        k=k,
        index_dir=ref_index,
        query_filter=query_filter,
        reference_filter=reference_filter,
        **base,
    )
    if self_map:
        xx_store = yy_store = xy_store = yx.store
    else:
        if k < 2:
            raise ValueError(f"joint kernels need k >= 2 (xx and yy use k - 1 neighbours plus self), got {k}")
        parts = Path(f"{out.rstrip('/')}.joint")
        parts.mkdir(exist_ok=True)
        query_index = os.fspath(parts / "query.index")
        xx = map_one(
            reference, None, parts / "xx.zarr", k=k - 1, index_dir=ref_index, query_filter=reference_filter, **base
        )
        yy = map_one(query, None, parts / "yy.zarr", k=k - 1, index_dir=query_index, query_filter=query_filter, **base)
        xy = map_one(
            reference,
            query,
            parts / "xy.zarr",
            k=k,
            index_dir=query_index,
            query_filter=reference_filter,
            reference_filter=query_filter,
            **base,
        )
        xx_store, yy_store, xy_store = xx.store, yy.store, xy.store
    joint_kernel(yx.store, xx_store, yy_store, xy_store, kernel=kernel, memory_budget=memory_budget)
    result = MappingResult(out)
    if transfer:
        result.transfer(transfer, reference=query if self_map else reference)
    return result
