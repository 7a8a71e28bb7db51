"""Pure top-k algebra: merge per-shard results, drop self-matches, convert faiss scores to distances."""

from __future__ import annotations

import numpy as np

MISSING_ID = -1  # faiss's id for "fewer than k results"; its distance is +inf after conversion


def to_distances(scores: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """faiss scores -> true distances: sqrt of squared L2, or 1 - inner product for cosine.

    faiss L2 indexes return *squared* distances; kernels such as CellMapper's expect true
    ones (FIELD-NOTES.md: squared inputs made every scarches weight underflow).
    """
    d = np.sqrt(np.maximum(scores, 0, dtype=np.float32)) if metric == "l2" else 1.0 - scores
    d = d.astype(np.float32, copy=False)
    d[ids == MISSING_ID] = np.inf
    return d


def sort_rows(distances: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (distance, id): ties are broken by the smaller id, deterministically."""
    missing = ids == MISSING_ID
    key_ids = np.where(missing, np.iinfo(np.int64).max, ids)
    order = np.lexsort((key_ids, distances), axis=-1)
    return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)


def merge_topk(distances: list[np.ndarray], ids: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Global top-k of several ``(n, k_i)`` result lists over disjoint id ranges, as faiss's ResultHeap."""
    d, i = sort_rows(np.concatenate(distances, axis=1), np.concatenate(ids, axis=1))
    return d[:, :k], i[:, :k]


def drop_self(distances: np.ndarray, ids: np.ndarray, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id from a ``(n, k + 1)`` result, giving ``(n, k)``.

    A row whose own id is not among its results (duplicates or an approximate index)
    loses its last, farthest neighbour instead.
    """
    is_self = ids == row_ids[:, None]
    first_self = is_self & (np.cumsum(is_self, axis=1) == 1)
    no_self = ~first_self.any(axis=1)
    first_self[no_self, -1] = True
    keep = ~first_self
    n, width = ids.shape
    return distances[keep].reshape(n, width - 1), ids[keep].reshape(n, width - 1)


def exact_distances(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, metric: str, rows: int = 2_048) -> np.ndarray:
    """Distances of each query to its candidate ids, computed pair by pair from the vectors.

    faiss's GEMM path (||q||² + ||x||² - 2q·x) loses digits to cancellation, and the loss depends on
    how the reference was split, so 1 and 4 shards gave distances differing in the 5th digit.
    Recomputing the k candidates directly costs k·dim flops per row and makes the output
    identical for any sharding and batching. ``ids`` are local row ids into ``xb``; -1 stays inf.
    """
    out = np.empty(ids.shape, np.float32)
    for s in range(0, len(ids), rows):
        block = ids[s : s + rows]
        cand = xb[np.maximum(block, 0)]  # (b, k, dim), bounded by `rows`
        q = xq[s : s + rows, None, :]
        if metric == "l2":
            d = np.sqrt(np.square(cand - q).sum(-1, dtype=np.float32))
        else:
            d = 1.0 - (cand * q).sum(-1, dtype=np.float32)
        out[s : s + rows] = np.where(block < 0, np.inf, d)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k ids found, per query row."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows for cosine search; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
