"""Kernels: neighbour distances -> row-normalised weights, with exact streamed global statistics.

Global kernels (``gauss``, ``scarches``) use one bandwidth for all rows, as CellMapper does;
raymap gets it exactly by merging per-chunk ``(count, mean, M2)`` (Chan et al.) during the
search pass, then weighs the stored distances in a second streamed pass. ``umap`` is row-local
(UMAP's ``smooth_knn_dist`` per row) and only defined for self-mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from raymap._parse import parse_choice

Stats = tuple[float, float, float]  # count, mean, M2 (sum of squared deviations)


def unit_stats(distances: np.ndarray) -> Stats:
    """``(count, mean, M2)`` of the finite entries of one chunk."""
    d = distances[np.isfinite(distances)].astype(np.float64)
    if d.size == 0:
        return 0.0, 0.0, 0.0
    mean = float(d.mean())
    return float(d.size), mean, float(((d - mean) ** 2).sum())


def merge_stats(parts: Iterable[Stats]) -> Stats:
    """Combine chunk statistics exactly (parallel variance formula), in any order."""
    n, mean, m2 = 0.0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return n, mean, m2


@dataclass(frozen=True, slots=True)
class Kernel:
    """A distance kernel: its formula and which global statistic (if any) it needs."""

    name: str
    needs: str | None  # "mean", "std" or None (row-local)
    weigh: Callable[[np.ndarray, float], np.ndarray]
    doc: str
    self_only: bool = False  # defined only when query and reference are the same rows


def _gauss(d: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(d**2) / (2 * sigma**2))


def _scarches(d: np.ndarray, std: float) -> np.ndarray:
    return np.exp(-d / (2.0 / std) ** 2)


def _inverse(d: np.ndarray, eps: float) -> np.ndarray:
    return 1.0 / (d + eps)


def _equal(d: np.ndarray, _: float) -> np.ndarray:
    return np.ones_like(d)


def _gauss_local(d: np.ndarray, _: float) -> np.ndarray:
    finite = np.where(np.isfinite(d), d, np.nan)
    sigma = np.nanmean(finite, axis=1, keepdims=True)
    sigma = np.where(sigma > 0, sigma, 1.0)
    return np.exp(-(d**2) / (2 * sigma**2))


def _umap(d: np.ndarray, _: float) -> np.ndarray:
    """UMAP membership strengths of each row's neighbours, as CellMapper's self-mapping ``umap`` kernel.

    CellMapper hands UMAP the k neighbours plus the row itself at distance 0 (``self_edges``) and
    ``n_neighbors = k + 1``; UMAP skips that first column in its bandwidth search and gives the
    self edge weight 0. Prepending the zero column here reproduces its numbers row by row.
    """
    from umap.umap_ import smooth_knn_dist

    d32 = np.ascontiguousarray(d, dtype=np.float32)
    with_self = np.hstack([np.zeros((len(d32), 1), np.float32), d32])
    sigmas, rhos = smooth_knn_dist(with_self, float(with_self.shape[1]))
    excess = d32 - rhos[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vals = np.exp(-(excess / sigmas[:, None]))
    return np.where((excess <= 0) | (sigmas[:, None] == 0), np.float32(1.0), vals)


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("gauss", "mean", _gauss, "w = exp(-d² / (2σ²)), σ = mean of all neighbour distances"),
        Kernel("scarches", "std", _scarches, "w = exp(-d / (2/s)²), s = std of all neighbour distances"),
        Kernel("inverse_distance", None, _inverse, "w = 1 / (d + ε), ε = 1e-8"),
        Kernel("equal", None, _equal, "w = 1 for every neighbour"),
        Kernel("gauss_local", None, _gauss_local, "w = exp(-d² / (2σᵢ²)), σᵢ = mean distance of row i"),
        Kernel("umap", None, _umap, "UMAP fuzzy membership exp(-(d - ρᵢ)/σᵢ) per row (self-mapping)", self_only=True),
    )
}


def parse_kernel(name: str) -> Kernel:
    return KERNELS[parse_choice(name, tuple(KERNELS), "kernel")]


def bandwidth(kernel: Kernel, stats: Stats) -> float:
    """The global parameter the kernel needs from the merged statistics (ε for inverse_distance)."""
    n, mean, m2 = stats
    if kernel.needs is None:
        return 1e-8
    if n == 0:
        raise ValueError("no finite neighbour distances: cannot compute a kernel bandwidth")
    value = mean if kernel.needs == "mean" else float(np.sqrt(m2 / n))
    if value <= 0:
        raise ValueError(f"kernel {kernel.name!r}: all neighbour distances are equal ({mean}); bandwidth is 0")
    return value


def kernel_values(kernel: Kernel, distances: np.ndarray, param: float) -> np.ndarray:
    """Raw (not normalised) float64 kernel weights; non-finite distances weigh 0.

    Symmetrisation and presence scores need these: row normalisation loses each row's scale.
    """
    d = distances.astype(np.float64)
    finite = np.isfinite(d)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.where(finite, kernel.weigh(np.where(finite, d, 0.0), param), 0.0).astype(np.float64)


def weigh(kernel: Kernel, distances: np.ndarray, param: float) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalised float32 weights and the mask of rows whose weights are all zero.

    A zero row (every neighbour infinitely far, or every weight underflowing) stays all zero:
    transfer reports it as ``unknown``, never as the first label.
    """
    w = kernel_values(kernel, distances, param)
    sums = w.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0
    w = np.divide(w, sums, out=np.zeros_like(w), where=sums > 0)
    return w.astype(np.float32), empty
