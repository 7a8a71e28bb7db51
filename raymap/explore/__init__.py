"""Exploration engine: filter, sample, cluster, project and render millions of embedding points, images on demand.

The facade the UI and the job entry point call::

    from raymap.explore import explore

    ex = explore(
        "collection/embeddings",       # Parquet file/folder (hive partitions), .zarr, .h5ad, .npy or an EmbeddingSource
        filter={"family": "Family01"},  # dict {column: value | [values]} or a pyarrow expression; pushed into the scan
        sample=10_000,                  # uniform sample size; with stratify=COL it is the cap of rows per value
        stratify=None,                  # metadata column to stratify the sample by
        cluster=8,                      # k, "auto" (silhouette on a sample) or None
        project="umap",                 # "pca", "umap", "tsne" or None
        columns=None,                   # metadata columns to keep (default: all non-embedding columns)
        # keyword-only: column="emb", cluster_backend="auto", project_backend="auto", fit_rows=None,
        # seed=0, max_points=20_000, bins=256, images="images.h5", memory_budget="512MiB", use_ray=False
    )
    ex.points            # pandas DataFrame: row_id, metadata..., cluster, x, y (a *position* = its row number)
    ex.lod               # LevelOfDetail: density (bins x bins counts of all points) + points (<= max_points positions)
    ex.zoom((x0, x1), (y0, y1))          # the same bounds for a region: denser sample, complete when it fits
    ex.composition("family", top=5)       # per cluster: value, count, share
    ex.neighbors([12, 40], k=10, combine=True)  # nearest rows over the filtered source (index reused per source)
    ex.export("selection.parquet", positions=[...])  # or .csv
    ex.image(position)   # ImageResult(image, source, errors): identifier, then HDF5 by uuid, then placeholder
    ex.summary()         # JSON-able counts, backends, timings, read statistics, notes

Large data: KMeans and projections are fitted on a seeded sample (``fit_rows``, default per
step) and every other point is labelled / placed in streamed batches, so only the sample and one
batch of embeddings are in memory. t-SNE can place new points only through openTSNE; with the
scikit-learn or cuML backends the points become the fit sample (said in ``notes``).
``use_ray=True`` runs clustering and projection as Ray tasks that take one GPU when the cluster
has GPUs (CPUs otherwise) and give it back when they return. Backend choice (``auto``) and its
thresholds are documented in :mod:`raymap.explore.cluster` and :mod:`raymap.explore.project`.
"""

from __future__ import annotations

from raymap.explore.cluster import KMeansModel, choose_kmeans_backend, composition, fit_kmeans, suggest_k
from raymap.explore.engine import Exploration, explore
from raymap.explore.filter import ReadStats, open_filtered, parse_filter_text
from raymap.explore.images import ImageFetcher, ImageResult, ImageUnavailableError
from raymap.explore.lod import LevelOfDetail, level_of_detail
from raymap.explore.project import Projector, choose_projection_backend
from raymap.explore.sample import stratified_rows, uniform_rows
from raymap.explore.selection import export_selection, neighbors

__all__ = [
    "Exploration",
    "ImageFetcher",
    "ImageResult",
    "ImageUnavailableError",
    "KMeansModel",
    "LevelOfDetail",
    "Projector",
    "ReadStats",
    "choose_kmeans_backend",
    "choose_projection_backend",
    "composition",
    "explore",
    "export_selection",
    "fit_kmeans",
    "level_of_detail",
    "neighbors",
    "open_filtered",
    "parse_filter_text",
    "stratified_rows",
    "suggest_k",
    "uniform_rows",
]
