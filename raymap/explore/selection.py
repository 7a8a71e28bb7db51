"""Nearest neighbours of points or a selection through the mapping spine's index shards; selection export."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from raymap.explore.sample import gather
from raymap.index import IndexSpec, build_index, choose_backend, load_searcher
from raymap.sources import EmbeddingSource
from raymap.topk import merge_topk

log = logging.getLogger(__name__)
EXPORT_FORMATS = (".parquet", ".csv")


def default_index_dir(source: EmbeddingSource) -> Path:
    """Where an exploration keeps the index of a source: one folder per content fingerprint, reused."""
    return Path(tempfile.gettempdir()) / "raymap-explore" / f"index-{source.fingerprint()}"


def neighbors(
    source: EmbeddingSource,
    rows: np.ndarray,
    k: int = 10,
    combine: bool = False,
    index_dir: str | os.PathLike[str] | None = None,
    spec: IndexSpec | None = None,
    batch_rows: int = 65_536,
) -> pd.DataFrame:
    """The ``k`` nearest rows of each of ``rows`` (itself excluded), or of the selection as a whole.

    The index is built with :func:`raymap.index.build_index` (reused when one for the same
    content is saved in ``index_dir``) and searched shard by shard with the spine's searchers.
    ``combine=True`` queries the selection's mean and leaves out its members: "more like these".
    Returns ``query_row, rank, neighbor_row, distance`` (``query_row`` -1 for a combined query).
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        raise ValueError("neighbors: the selection is empty")
    if k < 1:
        raise ValueError(f"neighbors: k must be >= 1, got {k}")
    excluded = len(rows) if combine else 1
    if k + excluded > source.n_rows:
        raise ValueError(f"neighbors: k={k} plus {excluded} excluded row(s) exceeds the {source.n_rows} rows")
    spec = spec or IndexSpec()
    manifest = build_index(source, index_dir or default_index_dir(source), spec, k=k)
    xq = gather(source, rows, batch_rows)
    if combine:
        xq = xq.mean(axis=0, keepdims=True)
    backend = choose_backend(spec.backend, manifest.factory)
    want = k + excluded
    parts = []
    for i, shard in enumerate(manifest.shards):
        searcher = load_searcher(manifest.shard_path(i), shard.row_start, manifest.metric, manifest.nprobe, backend)
        parts.append(searcher.search(xq, want))
    dist, ids = merge_topk([d for d, _ in parts], [i for _, i in parts], want)
    query_rows = np.full(1, -1) if combine else rows
    frames = []
    for q, d, i in zip(query_rows, dist, ids, strict=True):
        drop = np.isin(i, rows) if combine else i == q
        keep = ~drop & (i >= 0)
        n = min(k, int(keep.sum()))
        frames.append(
            pd.DataFrame({"query_row": q, "rank": np.arange(n), "neighbor_row": i[keep][:n], "distance": d[keep][:n]})
        )
    return pd.concat(frames, ignore_index=True)


def export_selection(points: pd.DataFrame, path: str | os.PathLike[str], positions: np.ndarray | None = None) -> Path:
    """Write rows of the points table (metadata, cluster, 2-D coordinates) to ``.parquet`` or ``.csv``.

    ``positions`` index rows of ``points`` (all when None). Written to a temporary name, then renamed.
    """
    out = Path(path)
    if out.suffix.lower() not in EXPORT_FORMATS:
        raise ValueError(f"{out}: export format {out.suffix!r} not supported; use one of {EXPORT_FORMATS}")
    if not out.parent.exists():
        raise FileNotFoundError(f"{out}: folder {out.parent} does not exist")
    table = points if positions is None else points.iloc[np.asarray(positions, dtype=np.int64)]
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if out.suffix.lower() == ".parquet":
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False)
    os.replace(tmp, out)
    log.info("exported %d rows to %s", len(table), out)
    return out
