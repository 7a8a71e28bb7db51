"""The exploration pipeline behind ``raymap.explore.explore``: filter -> sample -> cluster -> project -> LOD."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymap.explore.cluster import cluster_rows, composition
from raymap.explore.filter import Filtered, ReadStats, iter_column_tables, open_filtered, read_metadata
from raymap.explore.images import ImageFetcher, ImageResult
from raymap.explore.lod import DEFAULT_BINS, DEFAULT_MAX_POINTS, LevelOfDetail, level_of_detail
from raymap.explore.project import project_rows
from raymap.explore.sample import stratified_rows, uniform_rows
from raymap.explore.selection import export_selection, neighbors
from raymap.explore.tasks import run_step
from raymap.sources import EmbeddingSource
from raymap.sources.parquet import Filter

log = logging.getLogger(__name__)
RESERVED_COLUMNS = ("row_id", "cluster", "x", "y")


@dataclass
class Exploration:
    """What :func:`explore` found: a points table, its level-of-detail view, and handles for follow-ups.

    ``points`` has one row per explored point: ``row_id`` (position among the filtered rows of
    the source), the projected metadata columns, ``cluster`` (int32) when clustered and ``x``,
    ``y`` (float32) when projected. A *position* below is a row number of ``points``.
    """

    points: pd.DataFrame
    source: EmbeddingSource
    lod: LevelOfDetail | None  # the whole map; None without a projection
    stats: ReadStats | None  # what the filter read (Parquet only)
    backends: dict[str, str] = field(default_factory=dict)  # step -> backend that ran it
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    notes: list[str] = field(default_factory=list)  # things the user should know (e.g. fit-only t-SNE)
    k_scores: dict[int, float] = field(default_factory=dict)  # silhouette per k when k was suggested
    images: ImageFetcher | None = None
    seed: int = 0
    bins: int = DEFAULT_BINS
    max_points: int = DEFAULT_MAX_POINTS

    def zoom(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> LevelOfDetail:
        """Re-render a region at full detail with the same raster size and point budget."""
        xy = self._xy()
        labels = self.points["cluster"].to_numpy() if "cluster" in self.points else None
        return level_of_detail(xy, x_range, y_range, self.bins, self.max_points, labels, self.seed)

    def composition(self, column: str, top: int | None = None) -> pd.DataFrame:
        """Per cluster: counts and shares of each value of a metadata ``column``."""
        if "cluster" not in self.points:
            raise ValueError("composition needs clusters: run explore(..., cluster=k)")
        if column not in self.points:
            raise ValueError(f"no column {column!r} in the points; columns: {list(self.points.columns)}")
        return composition(self.points["cluster"].to_numpy(), self.points[column], top)

    def neighbors(
        self, positions: Any, k: int = 10, combine: bool = False, index_dir: str | os.PathLike[str] | None = None
    ) -> pd.DataFrame:
        """Nearest rows of the points at ``positions`` (or of them as one selection) over the whole filtered source.

        Adds ``neighbor_position`` (-1 where the neighbour is not among the points).
        """
        rows = self.points["row_id"].to_numpy()[np.asarray(positions, dtype=np.int64)]
        found = neighbors(self.source, rows, k=k, combine=combine, index_dir=index_dir)
        all_rows = self.points["row_id"].to_numpy()
        where = np.searchsorted(all_rows, found["neighbor_row"].to_numpy())
        where = np.minimum(where, len(all_rows) - 1)
        found["neighbor_position"] = np.where(all_rows[where] == found["neighbor_row"].to_numpy(), where, -1)
        return found

    def export(self, path: str | os.PathLike[str], positions: Any = None) -> Path:
        """Write the selected points (all when None) with metadata, cluster and coordinates to .parquet/.csv."""
        return export_selection(self.points, path, None if positions is None else np.asarray(positions))

    def image(self, position: int, strict: bool = False) -> ImageResult:
        """The thumbnail of one point from its ``identifier`` / ``uuid`` columns; a placeholder unless ``strict``."""
        fetcher = self.images or ImageFetcher()
        self.images = fetcher
        row = self.points.iloc[int(position)]
        if "identifier" not in row and "uuid" not in row:
            raise ValueError("images need an 'identifier' or 'uuid' column among the explored columns")
        return fetcher.fetch(row.get("identifier"), row.get("uuid"), strict=strict)

    def summary(self) -> dict[str, Any]:
        """Counts, backends, timings and read statistics as plain JSON-able values."""
        out: dict[str, Any] = {
            "source": self.source.describe(),
            "points": len(self.points),
            "backends": dict(self.backends),
            "seconds": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }
        if self.stats is not None:
            out["read"] = {f: getattr(self.stats, f) for f in self.stats.__dataclass_fields__}
        if "cluster" in self.points:
            out["clusters"] = self.points["cluster"].value_counts().sort_index().to_dict()
        if self.k_scores:
            out["silhouette"] = {k: round(v, 4) for k, v in self.k_scores.items()}
        if self.lod is not None:
            out["lod"] = {"bins": self.bins, "interactive_points": len(self.lod.points), "in_view": self.lod.n_in_view}
        return out

    def _xy(self) -> np.ndarray:
        if "x" not in self.points:
            raise ValueError("no 2-D coordinates: run explore(..., project='pca'|'umap'|'tsne')")
        return self.points[["x", "y"]].to_numpy(dtype=np.float32)


def _sample_rows(filtered: Filtered, sample: int | None, stratify: str | None, seed: int) -> np.ndarray:
    source = filtered.source
    if stratify is None:
        return np.arange(source.n_rows, dtype=np.int64) if sample is None else uniform_rows(source.n_rows, sample, seed)
    if sample is None:
        raise ValueError(f"stratify={stratify!r} needs sample=N, the cap of rows per value")
    if stratify not in source.metadata_columns():
        raise ValueError(f"cannot stratify by unknown column {stratify!r}; columns: {source.metadata_columns()}")
    return stratified_rows(
        lambda: ((start, table.column(stratify)) for start, table in iter_column_tables(source, [stratify])),
        sample,
        seed,
    )


def explore(
    data: Any,
    filter: Filter = None,
    sample: int | None = None,
    stratify: str | None = None,
    cluster: int | str | None = None,
    project: str | None = "pca",
    columns: list[str] | None = None,
    *,
    column: str = "emb",
    cluster_backend: str = "auto",
    project_backend: str = "auto",
    fit_rows: int | None = None,
    seed: int = 0,
    max_points: int = DEFAULT_MAX_POINTS,
    bins: int = DEFAULT_BINS,
    images: str | os.PathLike[str] | ImageFetcher | None = None,
    memory_budget: int | str = "512MiB",
    use_ray: bool = False,
) -> Exploration:
    """Filter, sample, cluster and project embeddings; see the package docstring for every argument."""
    timings: dict[str, float] = {}
    backends: dict[str, str] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    filtered = open_filtered(data, filter, columns, column)
    clash = [c for c in filtered.columns if c in RESERVED_COLUMNS]
    if clash:
        raise ValueError(f"metadata column(s) {clash} clash with the points table's own columns {RESERVED_COLUMNS}")
    source = filtered.source
    timings["filter"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = _sample_rows(filtered, sample, stratify, seed)
    points = read_metadata(source, filtered.columns, rows).to_pandas()
    timings["sample"] = time.perf_counter() - t0
    batch_rows = source.batch_rows_for(memory_budget)
    k_scores: dict[int, float] = {}
    if cluster is not None:
        t0 = time.perf_counter()
        clustered = run_step(
            cluster_rows, source, rows, cluster, cluster_backend, seed, fit_rows, batch_rows, use_ray=use_ray
        )
        points["cluster"] = clustered.labels
        backends["cluster"] = clustered.model.backend
        k_scores = clustered.k_scores
        timings["cluster"] = time.perf_counter() - t0
    lod = None
    if project is not None:
        t0 = time.perf_counter()
        projected = run_step(
            project_rows, source, rows, project, project_backend, seed, fit_rows, batch_rows, use_ray=use_ray
        )
        points["x"], points["y"] = projected.coords[:, 0], projected.coords[:, 1]
        backends["project"] = f"{projected.method}:{projected.backend}"
        if not projected.placed_all:
            points = points.iloc[projected.fitted].reset_index(drop=True)
            notes.append(
                f"t-SNE via {projected.backend} was fitted on {len(points)} of {len(rows)} rows and cannot place "
                "the others; the points are that sample (install openTSNE or fit on all rows)"
            )
        timings["project"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels = points["cluster"].to_numpy() if "cluster" in points else None
        lod = level_of_detail(points[["x", "y"]].to_numpy(dtype=np.float32), None, None, bins, max_points, labels, seed)
        timings["lod"] = time.perf_counter() - t0
    fetcher = images if isinstance(images, ImageFetcher) or images is None else ImageFetcher(images)
    result = Exploration(
        points, source, lod, filtered.stats, backends, timings, notes, k_scores, fetcher, seed, bins, max_points
    )
    log.info("explored %d points: %s", len(points), result.summary()["seconds"])
    return result
