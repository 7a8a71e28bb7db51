"""AnnData files (.h5ad or .zarr) read lazily: rows of ``obsm[use_rep]`` or ``X`` by slice."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from raymap.sources.base import EmbeddingSource


class AnnDataSource(EmbeddingSource):
    """``obsm[use_rep]`` (or dense/CSR ``X``) of an AnnData file, sliced from disk.

    anndata's backed mode does not page ``obsm``, so rows are read through h5py/zarr
    directly following anndata's on-disk spec; ``obs`` columns use anndata's element reader.
    """

    kind = "anndata"

    def __init__(self, path: str | os.PathLike[str], use_rep: str = "X_pca") -> None:
        self.path = os.fspath(path)
        self.use_rep = use_rep
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"AnnData source not found: {self.path}")
        with self._open() as root:
            node = self._node(root)
            shape = tuple(node.attrs["shape"]) if self._is_sparse(node) else node.shape
            self._shape = (int(shape[0]), int(shape[1]))
            self._chunk_rows = int(node.chunks[0]) if getattr(node, "chunks", None) else 0
            self._obs = [c for c in root["obs"].attrs.get("column-order", [])]
        if self._shape[0] == 0:
            raise ValueError(f"{self.describe()}: no rows")

    def _open(self) -> Any:
        try:
            if self.path.endswith(".zarr") or os.path.isdir(self.path):
                import zarr

                return _Closing(zarr.open_group(self.path, mode="r"))
            import h5py

            return h5py.File(self.path, "r")
        except Exception as e:  # h5py/zarr raise several types for a bad file
            raise ValueError(f"{self.path}: not a readable AnnData file: {e}") from e

    def _node(self, root: Any) -> Any:
        if self.use_rep == "X":
            return root["X"]
        if "obsm" not in root or self.use_rep not in root["obsm"]:
            have = sorted(root["obsm"].keys()) if "obsm" in root else []
            raise ValueError(f"{self.path}: no obsm[{self.use_rep!r}]; obsm keys: {have}, or use_rep='X'")
        return root["obsm"][self.use_rep]

    @staticmethod
    def _is_sparse(node: Any) -> bool:
        return node.attrs.get("encoding-type", "") in ("csr_matrix", "csc_matrix")

    @property
    def n_rows(self) -> int:
        return self._shape[0]

    @property
    def dim(self) -> int:
        return self._shape[1]

    @property
    def chunk_rows(self) -> int:
        return self._chunk_rows or super().chunk_rows

    def describe(self) -> str:
        return f"{self.path}:{'X' if self.use_rep == 'X' else f'obsm[{self.use_rep!r}]'}"

    def _read(self, start: int, stop: int) -> np.ndarray:
        with self._open() as root:
            node = self._node(root)
            if not self._is_sparse(node):
                return np.asarray(node[start:stop])
            if node.attrs["encoding-type"] != "csr_matrix":
                raise ValueError(f"{self.describe()}: CSC X cannot be read by rows; store X as CSR")
            import scipy.sparse as sp

            indptr = np.asarray(node["indptr"][start : stop + 1])
            lo, hi = int(indptr[0]), int(indptr[-1])
            block = sp.csr_matrix(
                (node["data"][lo:hi], node["indices"][lo:hi], indptr - lo),
                shape=(stop - start, self.dim),
            )
            return block.toarray()

    def metadata_columns(self) -> list[str]:
        return list(self._obs)

    def read_column(self, name: str) -> np.ndarray:
        if name not in self._obs:
            return super().read_column(name)
        from anndata.io import read_elem

        with self._open() as root:
            return np.asarray(read_elem(root["obs"][name]))


class _Closing:
    """Context manager for zarr groups, which need no closing, so both backends read alike."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def __enter__(self) -> Any:
        return self.group

    def __exit__(self, *exc: object) -> None:
        return None
