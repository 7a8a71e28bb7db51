"""Level of detail for millions of 2-D points: a density raster of all of them plus a bounded point sample.

Whatever the number of points, a view is ``bins`` x ``bins`` counts and at most ``max_points``
point positions: the browser gets the raster for the mass and the sample for hover and
selection. Zooming re-renders a region with the same bounds, so the sample gets denser until
every point in view is shown. Both passes stream over the coordinates in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 256
DEFAULT_MAX_POINTS = 20_000
STRATA_GRID = 16  # the view is cut into STRATA_GRID x STRATA_GRID cells; sparse cells keep their points
BATCH_ROWS = 1_000_000


@dataclass(frozen=True, slots=True)
class LevelOfDetail:
    """One rendered view of a point cloud."""

    x_range: tuple[float, float]  # view bounds, inclusive
    y_range: tuple[float, float]
    density: np.ndarray  # (bins, bins) int64 counts of all points in view; row = y bin, column = x bin
    points: np.ndarray  # int64 positions (into the coordinate array) of the interactive points, sorted
    n_in_view: int  # points inside the view

    @property
    def complete(self) -> bool:
        """Every point in view is among ``points`` (zoomed in far enough)."""
        return len(self.points) == self.n_in_view


def _bounds(xy: np.ndarray, batch_rows: int) -> tuple[tuple[float, float], tuple[float, float]]:
    lo = np.full(2, np.inf)
    hi = np.full(2, -np.inf)
    for s in range(0, len(xy), batch_rows):
        block = xy[s : s + batch_rows]
        block = block[np.isfinite(block).all(axis=1)]
        if len(block):
            lo = np.minimum(lo, block.min(axis=0))
            hi = np.maximum(hi, block.max(axis=0))
    if not np.isfinite(lo).all():
        raise ValueError("level of detail: no point has finite coordinates")
    pad = np.where(hi > lo, (hi - lo) * 1e-6, 0.5)  # a flat cloud still gets a non-empty view
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _check_range(r: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in r)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}: expected (low, high) with low < high, got {r!r}")
    return lo, hi


def water_fill_cap(counts: np.ndarray, budget: int) -> int:
    """The largest per-stratum cap with ``sum(min(counts, cap)) <= budget``."""
    if counts.sum() <= budget:
        return int(counts.max(initial=0))
    lo, hi = 0, int(counts.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(counts, mid).sum() <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def level_of_detail(
    xy: np.ndarray,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    bins: int = DEFAULT_BINS,
    max_points: int = DEFAULT_MAX_POINTS,
    labels: np.ndarray | None = None,
    seed: int = 0,
    batch_rows: int = BATCH_ROWS,
) -> LevelOfDetail:
    """Render the view ``x_range`` x ``y_range`` (all finite points when None) of ``xy`` (n, 2).

    The density counts every point in view. The interactive sample is stratified by cell of a
    coarse grid (and by ``labels``, e.g. clusters, when given): each stratum keeps up to one
    common cap of randomly chosen points, the cap being the largest that fits ``max_points``,
    so small clusters and outlying regions stay visible. Seeded: the same call gives the same points.
    """
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"level of detail needs (n, 2) coordinates, got shape {xy.shape}")
    if bins < 1 or max_points < 1:
        raise ValueError(f"bins and max_points must be >= 1, got {bins} and {max_points}")
    if labels is not None and len(labels) != len(xy):
        raise ValueError(f"labels ({len(labels)}) and coordinates ({len(xy)}) differ in length")
    if x_range is None or y_range is None:
        full_x, full_y = _bounds(xy, batch_rows)
        x_range, y_range = x_range or full_x, y_range or full_y
    xr, yr = _check_range(x_range, "x_range"), _check_range(y_range, "y_range")
    n_labels = int(labels.max()) + 1 if labels is not None and len(labels) else 1

    def batches():
        for s in range(0, len(xy), batch_rows):
            block = xy[s : s + batch_rows]
            inside = (block[:, 0] >= xr[0]) & (block[:, 0] <= xr[1]) & (block[:, 1] >= yr[0]) & (block[:, 1] <= yr[1])
            pos = np.flatnonzero(inside)
            cell_x = np.minimum(
                ((block[pos, 0] - xr[0]) / (xr[1] - xr[0]) * STRATA_GRID).astype(np.int64), STRATA_GRID - 1
            )
            cell_y = np.minimum(
                ((block[pos, 1] - yr[0]) / (yr[1] - yr[0]) * STRATA_GRID).astype(np.int64), STRATA_GRID - 1
            )
            strata = (cell_y * STRATA_GRID + cell_x) * n_labels
            if labels is not None:
                strata += labels[s : s + batch_rows][pos].astype(np.int64)
            yield s, pos, block[pos], strata

    density = np.zeros((bins, bins), dtype=np.int64)
    counts = np.zeros(STRATA_GRID * STRATA_GRID * n_labels, dtype=np.int64)
    for _, _, block, strata in batches():
        density += np.histogram2d(block[:, 1], block[:, 0], bins=bins, range=[yr, xr])[0].astype(np.int64)
        counts += np.bincount(strata, minlength=len(counts))
    cap = water_fill_cap(counts, max_points)
    kept_pos = np.empty(0, np.int64)
    kept_key = np.empty(0, np.float64)
    kept_stratum = np.empty(0, np.int64)
    for s, pos, _, strata in batches():
        key = np.random.default_rng([seed, s]).random(len(pos))
        kept_pos = np.concatenate([kept_pos, pos + s])
        kept_key = np.concatenate([kept_key, key])
        kept_stratum = np.concatenate([kept_stratum, strata])
        order = np.lexsort((kept_key, kept_stratum))  # by stratum, then random key
        first = np.searchsorted(kept_stratum[order], kept_stratum[order], side="left")
        keep = order[np.arange(len(order)) - first < cap]  # the cap smallest keys of each stratum
        kept_pos, kept_key, kept_stratum = kept_pos[keep], kept_key[keep], kept_stratum[keep]
    return LevelOfDetail(xr, yr, density, np.sort(kept_pos), int(counts.sum()))
