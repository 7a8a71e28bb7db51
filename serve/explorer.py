"""Explorations off the UI replica: one Ray actor runs them and keeps each session's result for follow-ups.

The replica's handlers only ``await`` this actor. Clustering and projection run as Ray tasks
(``use_ray=True``: a GPU when the cluster has one), filter/sample/metadata reads and the
level-of-detail view in the actor's own threads, several sessions at once.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from serve.params import ExploreRequest
from serve.paths import DataRoots, PathRefused
from serve.scatter import payload

log = logging.getLogger(__name__)
MAX_SESSIONS = 8  # explorations kept (least recently used dropped first)
UI_MAX_POINTS = 4_000  # interactive points per view; the raster carries the rest
UI_BINS = 200
NEIGHBOURS = 8
MAX_DISTINCT = 100  # a column with more distinct values is not offered as a filter
DISTINCT_SCAN_ROWS = 1_000_000  # non-partition columns: distinct values among the first rows
CONCURRENCY = 4


@dataclass(slots=True)
class Session:
    """One browser session's exploration and what its map currently shows."""

    exploration: Any  # raymap.explore.Exploration
    request: ExploreRequest
    lod: Any  # the LevelOfDetail on screen (whole map or a zoomed region)


class ExploreService:
    """The Ray actor (``num_cpus=0``, threaded) behind the Explore tab; every path is checked against the roots."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = DataRoots.parse(roots)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._distinct: dict[str, dict[str, list[Any] | None]] = {}
        self._lock = threading.Lock()

    # --- dataset description ---------------------------------------------------------------
    def columns(self, dataset: str) -> dict[str, list[Any] | None]:
        """Metadata column -> its distinct values (sorted) when few enough to filter on, else None."""
        real = str(self.roots.resolve(dataset, what="dataset"))
        with self._lock:
            if real in self._distinct:
                return self._distinct[real]
        from raymap.explore.filter import iter_column_tables
        from raymap.sources import ParquetSource, open_source

        source = open_source(real)
        partitions = _partition_values(real) if isinstance(source, ParquetSource) else {}
        out: dict[str, list[Any] | None] = {}
        for name in source.metadata_columns():
            if name in partitions:
                out[name] = partitions[name]
                continue
            seen: set[Any] = set()
            rows = 0
            for _, table in iter_column_tables(source, [name]):
                column = table.column(name)
                if not (pa.types.is_string(column.type) or pa.types.is_integer(column.type)):
                    seen = set(range(MAX_DISTINCT + 1))  # floats, lists: not a filter
                    break
                seen.update(pc.unique(column).to_pylist())
                rows += table.num_rows
                if len(seen) > MAX_DISTINCT or rows >= DISTINCT_SCAN_ROWS:
                    break
            out[name] = sorted(v for v in seen if v is not None) if len(seen) <= MAX_DISTINCT else None
        with self._lock:
            self._distinct[real] = out
        return out

    # --- exploration ------------------------------------------------------------------------
    def run(self, session: str, request: ExploreRequest, color_by: str | None) -> dict[str, Any]:
        """Filter, sample, cluster, project; keep the result for this session; return the first view."""
        from raymap.explore import explore

        for path in (request.dataset, request.images):
            if path is not None:
                self.roots.resolve(str(path))  # the request was checked in the replica; check again here
        ex = explore(
            str(request.dataset),
            filter=request.filter or None,
            sample=request.sample,
            cluster=request.cluster_k,
            project=request.projection,
            cluster_backend=request.cluster_backend,
            max_points=UI_MAX_POINTS,
            bins=UI_BINS,
            images=str(request.images) if request.images else None,
            use_ray=True,
        )
        with self._lock:
            self._sessions[session] = Session(ex, request, ex.lod)
            self._sessions.move_to_end(session)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return self.view(session, color_by)

    def _session(self, session: str) -> Session:
        with self._lock:
            if session not in self._sessions:
                raise ValueError("no exploration in this session yet (or it expired): press Explore")
            self._sessions.move_to_end(session)
            return self._sessions[session]

    def view(self, session: str, color_by: str | None) -> dict[str, Any]:
        """The map payload, summary, and choices for colour and composition."""
        s = self._session(session)
        ex, lod = s.exploration, s.lod
        points: pd.DataFrame = ex.points
        meta_columns = [c for c in points.columns if c not in ("row_id", "x", "y")]
        color = color_by if color_by in points else ("cluster" if "cluster" in points else None)
        caption = f"{len(lod.points):,} of {lod.n_in_view:,} points in view" + (" (all)" if lod.complete else "")
        return {
            "scatter": payload(points, lod.points, lod.density, lod.x_range, lod.y_range, color, caption),
            "summary": ex.summary(),
            "columns": meta_columns,
            "color_by": color,
        }

    def zoom(self, session: str, x_range: tuple[float, float] | None, y_range: tuple[float, float] | None) -> None:
        """Show a region at full detail (``None``: back to the whole map)."""
        s = self._session(session)
        s.lod = s.exploration.lod if x_range is None or y_range is None else s.exploration.zoom(x_range, y_range)

    def composition(self, session: str, column: str, top: int = 3) -> pd.DataFrame:
        """Per cluster: size and its most frequent values of ``column`` with their shares."""
        ex = self._session(session).exploration
        comp = ex.composition(column, top=top)
        sizes = ex.points["cluster"].value_counts()
        rows = []
        for cluster, group in comp.groupby("cluster", sort=True):
            tops = " · ".join(f"{v} {100 * s:.0f} %" for v, s in zip(group["value"], group["share"], strict=True))
            rows.append({"cluster": int(cluster), "points": int(sizes[cluster]), f"top {column}": tops})
        return pd.DataFrame(rows)

    def point(self, session: str, position: int) -> dict[str, Any]:
        """A clicked point: metadata, thumbnail and its nearest neighbours (over the whole filtered data)."""
        s = self._session(session)
        ex = s.exploration
        points: pd.DataFrame = ex.points
        if not 0 <= position < len(points):
            raise ValueError(f"point {position} is not on the map (0..{len(points) - 1})")
        row = points.iloc[position]
        found = ex.neighbors([position], k=NEIGHBOURS)
        rows = found["neighbor_row"].to_numpy()
        label = _label_column(points)
        wanted = [c for c in ("identifier", "uuid", label) if c and c in ex.source.metadata_columns()]
        from raymap.explore.filter import read_metadata

        meta = read_metadata(ex.source, wanted, np.unique(rows)).to_pandas().set_index("row_id").loc[rows]
        gallery = []
        records = meta.to_dict("records")
        for rank, (info, dist) in enumerate(zip(records, found["distance"].to_numpy(), strict=True)):
            caption = (f"{info[label]} · " if label in info else f"#{rank + 1} · ") + f"d {dist:.2f}"
            gallery.append((self._image(ex, info.get("identifier"), info.get("uuid")), caption))
        details = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k not in ("x", "y")}
        return {
            "image": self._image(ex, row.get("identifier"), row.get("uuid")),
            "details": details,
            "gallery": gallery,
        }

    def _image(self, ex: Any, identifier: Any, uuid: Any) -> Any:
        """Thumbnail by identifier (``file://`` only inside the data roots), else the HDF5 store, else a placeholder."""
        from raymap.explore import ImageFetcher

        ident = str(identifier) if isinstance(identifier, str) and identifier else None
        if ident and ident.startswith("file:"):
            try:
                self.roots.resolve(urllib.request.url2pathname(urllib.parse.urlparse(ident).path))
            except (PathRefused, FileNotFoundError):
                ident = None  # never read a file outside the roots; the HDF5 fallback may still have it
        fetcher = ex.images or ImageFetcher()
        ex.images = fetcher
        return fetcher.fetch(ident, str(uuid) if uuid else None).image

    def export(self, session: str, positions: list[int], out: str) -> str:
        """Write the selected points (all when empty) to a new file under the data roots."""
        target = self.roots.resolve(out, must_exist=False, what="export")
        ex = self._session(session).exploration
        n = len(ex.points)
        bad = [p for p in positions if not 0 <= int(p) < n]
        if bad:
            raise ValueError(f"export: positions {bad[:5]} are not on the map (0..{n - 1})")
        return str(ex.export(target, positions or None))

    def forget(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(session, None)


def _label_column(points: pd.DataFrame) -> str | None:
    """The column that names a point in captions: ``species`` for image collections, else the first text column."""
    if "species" in points:
        return "species"
    skip = ("row_id", "x", "y", "cluster", "identifier", "uuid")
    return next((c for c in points.columns if c not in skip and points[c].dtype == object), None)


def _partition_values(path: str) -> dict[str, list[Any]]:
    """Hive partition values from folder names alone (no data read)."""
    if not os.path.isdir(path):
        return {}
    dataset = ds.dataset(path, format="parquet", partitioning=ds.HivePartitioning.discover(infer_dictionary=True))
    part = dataset.partitioning
    if part is None or not part.dictionaries:
        return {}
    return {
        name: sorted(d.to_pylist())
        for name, d in zip(part.schema.names, part.dictionaries, strict=True)
        if d is not None and len(d) <= MAX_DISTINCT
    }


def start(roots: tuple[str, ...]) -> Any:
    """The actor handle: no CPU reserved (the steps it starts reserve theirs), a few calls at a time."""
    import ray

    actor = ray.remote(ExploreService).options(num_cpus=0, max_concurrency=CONCURRENCY)
    return actor.remote(roots)
