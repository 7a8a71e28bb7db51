"""Out-of-core symmetrisation of a self-mapping kernel (max / mean / fuzzy union of K and Kᵀ), never dense.

Kᵀ's rows are K's columns, scattered over every chunk of K: a first pass writes K's edges
reversed into row-range buckets on disk, a second pass reads one bucket and the same rows of
K, combines them and appends the row-normalised result to a CSR graph in the store.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from raymap._parse import parse_bytes, parse_choice
from raymap.kernels import kernel_values, parse_kernel
from raymap.store import MappingStore, fixed_width_csr
from raymap.transfer.buckets import EdgeBuckets, bucket_rows_for, transpose_into
from raymap.transfer.graph import CSRGraph, graph_names, open_graph

log = logging.getLogger(__name__)
METHODS = ("max", "mean", "union")  # union: UMAP's fuzzy union K + Kᵀ - K∘Kᵀ (set_op_mix_ratio = 1)


def require_self_mapping(store: MappingStore, what: str) -> None:
    """``what`` needs a square operator over one set of rows."""
    if not store.attrs.get("self_mapping") or store.n_query != store.n_reference:
        raise ValueError(
            f"{what} needs a self-mapping store (query = reference); {store.path} maps "
            f"{store.n_query} query rows onto {store.n_reference} reference rows"
        )


def raw_kernel_rows(store: MappingStore, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``[start, stop)`` of the kernel matrix K before row normalisation, from the stored distances."""
    if "kernel_param" not in store.attrs:
        raise ValueError(f"{store.path}: no kernel_param in the store's attrs; was the mapping finished?")
    kernel = parse_kernel(str(store.attrs["kernel"]))
    ids, distances = store.neighbors(start, stop)
    values = kernel_values(kernel, distances, float(store.attrs["kernel_param"]))
    return fixed_width_csr(values, ids, store.n_reference)


def iter_raw_kernel(store: MappingStore) -> Iterator[tuple[int, sp.csr_matrix]]:
    for start, stop in store.units():
        yield start, raw_kernel_rows(store, start, stop)


def combine(k: sp.csr_matrix, kt: sp.csr_matrix, method: str) -> sp.csr_matrix:
    """Element-wise max, mean or fuzzy union of K and Kᵀ rows."""
    if method == "max":
        return sp.csr_matrix(k.maximum(kt))
    if method == "mean":
        return sp.csr_matrix((k + kt) / 2.0)
    return sp.csr_matrix(k + kt - k.multiply(kt))


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1; all-zero rows stay zero (CellMapper's MappingOperator does the same)."""
    sums = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
    out = sp.csr_matrix(sp.diags(scale) @ m)
    out.eliminate_zeros()
    return out


def symmetrize(store: MappingStore, method: str = "max", memory_budget: int | str = "1GiB") -> CSRGraph:
    """Build (or reuse) graph ``sym_<method>``: the row-normalised symmetrised kernel of a self-mapping store.

    Disk: 24 bytes per edge in a temporary folder beside the store, removed afterwards.
    Memory: one bucket of edges (sized from ``memory_budget``) plus one chunk of K.
    """
    parse_choice(method, METHODS, "symmetrisation")
    store.require_complete()
    require_self_mapping(store, f"symmetrize={method!r}")
    if store.attrs.get("operator"):
        raise ValueError(f"{store.path}: its {store.attrs['operator']!r} kernel graph is already symmetric")
    name = f"sym_{method}"
    identity = {"kernel": store.attrs["kernel"], "kernel_param": store.attrs.get("kernel_param"), "method": method}
    if name in graph_names(store):
        graph = open_graph(store, name)
        if graph.complete and all(graph.group.attrs.get(k) == v for k, v in identity.items()):
            return graph
    budget = parse_bytes(memory_budget)
    n = store.n_query
    bucket_rows = bucket_rows_for(budget, store.chunk_rows, store.k)
    parent = os.path.dirname(os.path.abspath(store.path))
    log.info("symmetrize (%s) %s: %d rows, buckets of %d rows", method, store.path, n, bucket_rows)
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{os.path.basename(store.path)}.transpose-") as tmp:
        buckets = EdgeBuckets(tmp, (n, n), bucket_rows, flush_bytes=max(1, budget // 4))
        transpose_into(iter_raw_kernel(store), buckets)
        graph = CSRGraph.create(store.group, name, (n, n), {**identity, "chunk_rows": store.chunk_rows})
        for start, kt in buckets:
            k = raw_kernel_rows(store, start, start + kt.shape[0])
            graph.append(row_normalise(combine(k, kt, method)))
        graph.finish()
    return graph
