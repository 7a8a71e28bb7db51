"""Lazy embedding sources: Parquet, zarr, AnnData, .npy and numpy arrays behind one interface."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from raymap.sources.anndata_source import AnnDataSource
from raymap.sources.arrays import ArraySource, NpySource, ZarrSource
from raymap.sources.base import (
    EmbeddingSource,
    NonFiniteRowsError,
    check_finite,
    plan_batches,
    rows_for_budget,
)
from raymap.sources.parquet import Filter, ParquetSource, parse_filter

__all__ = [
    "AnnDataSource",
    "ArraySource",
    "EmbeddingSource",
    "NonFiniteRowsError",
    "NpySource",
    "ParquetSource",
    "ZarrSource",
    "check_finite",
    "open_source",
    "parse_filter",
    "plan_batches",
    "rows_for_budget",
]


def open_source(
    data: Any,
    *,
    column: str = "emb",
    use_rep: str = "X_pca",
    filter: Filter = None,
    array: str | None = None,
) -> EmbeddingSource:
    """Pick the source for ``data``: a path (by suffix / folder content), an array, AnnData or a source.

    ``column`` names a Parquet embedding column, ``use_rep`` an AnnData ``obsm`` key (or ``"X"``),
    ``array`` the array inside a zarr group.
    """
    if isinstance(data, EmbeddingSource):
        return data
    if isinstance(data, np.ndarray):
        return ArraySource(data)
    if type(data).__name__ == "AnnData":
        rep = data.X if use_rep == "X" else data.obsm[use_rep]
        meta = {c: data.obs[c].to_numpy() for c in data.obs.columns}
        return ArraySource(np.asarray(rep), meta, name=f"AnnData obsm[{use_rep!r}]")
    if not isinstance(data, str | os.PathLike):
        raise ValueError(f"cannot read embeddings from {type(data).__name__}; pass a path, array or AnnData")
    path = os.fspath(data)
    if not os.path.exists(path):
        raise FileNotFoundError(f"input not found: {path}")
    if path.endswith(".h5ad"):
        return AnnDataSource(path, use_rep=use_rep)
    if path.endswith(".npy"):
        return NpySource(path)
    if os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "zarr.json")) or os.path.exists(os.path.join(path, ".zgroup"))
    ):
        if os.path.isdir(os.path.join(path, "obsm")):
            return AnnDataSource(path, use_rep=use_rep)
        return ZarrSource(path, array=array)
    if path.endswith(".parquet") or os.path.isdir(path):
        return ParquetSource(path, column=column, filter=filter)
    raise ValueError(f"{path}: unknown input format; expected .parquet (or folder), .zarr, .h5ad or .npy")
