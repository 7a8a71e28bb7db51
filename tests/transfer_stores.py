"""Mapping stores built directly (exact kNN in numpy, the library's kernels), for transfer tests without Ray."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from raymap.kernels import bandwidth, kernel_values, merge_stats, parse_kernel, unit_stats, weigh
from raymap.store import MappingStore


def exact_knn(xq: np.ndarray, xb: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force true L2 neighbours (ids ascending by distance, float64 like sklearn), self dropped for self-mapping."""
    xq, xb = xq.astype(np.float64), xb.astype(np.float64)
    d2 = (xq**2).sum(1)[:, None] - 2 * xq @ xb.T + (xb**2).sum(1)[None, :]
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    ids = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dist = np.sqrt(np.maximum(np.take_along_axis(d2, ids, axis=1), 0))
    return ids, dist.astype(np.float32)


def blobs(n: int, dim: int, n_types: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around ``n_types`` centres and their type codes."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 3.0, (n_types, dim))
    types = rng.integers(0, n_types, n)
    return (centres[types] + rng.normal(0, 1.0, (n, dim))).astype(np.float32), types


def build_store(
    path: Path,
    xq: np.ndarray,
    xb: np.ndarray | None,
    k: int,
    chunk_rows: int,
    kernel: str = "gauss",
    commit: bool = True,
) -> MappingStore:
    """A complete store (``xb=None`` self-maps ``xq``), written unit by unit like the shard actors do."""
    self_map = xb is None
    ids, dist = exact_knn(xq, xq if self_map else xb, k, exclude_self=self_map)
    n_ref = len(xq) if self_map else len(xb)
    attrs = {"kernel": kernel, "self_mapping": self_map, "exclude_self": self_map}
    store = MappingStore.create(path, len(xq), n_ref, k, chunk_rows, attrs, overwrite=True)
    kern = parse_kernel(kernel)
    stats = merge_stats(unit_stats(dist[s:e]) for s, e in store.units())
    param = bandwidth(kern, stats)
    store.group.attrs.update(
        {"kernel_param": param, "distance_mean": stats[1], "distance_std": math.sqrt(stats[2] / stats[0])}
    )
    for unit, (s, e) in enumerate(store.units()):
        store.write_neighbors(s, ids[s:e], dist[s:e])
        store.write_weights(s, weigh(kern, dist[s:e], param)[0])
        if commit or unit % 2 == 0:
            store.commit("search", unit, unit_stats(dist[s:e]))
            store.commit("weights", unit)
    return store


def raw_kernel(store: MappingStore) -> sp.csr_matrix:
    """The whole kernel matrix before row normalisation (dense references in tests)."""
    ids, dist = store.neighbors()
    values = kernel_values(parse_kernel(store.attrs["kernel"]), dist, float(store.attrs["kernel_param"]))
    n, k = ids.shape
    rows = np.repeat(np.arange(n), k)
    return sp.csr_matrix((values.ravel(), (rows, ids.ravel().astype(np.int64))), shape=(n, store.n_reference))


def normalise_rows(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
