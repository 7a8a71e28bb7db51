"""Array-backed sources: zarr arrays, .npy memmaps and in-memory numpy arrays."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from raymap.sources.base import EmbeddingSource


def _check_matrix(shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"{where}: embeddings must be 2-D (rows, dim), got shape {shape}")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"{where}: embeddings must be numeric, got dtype {dtype}")
    if shape[0] == 0:
        raise ValueError(f"{where}: no rows")


class ArraySource(EmbeddingSource):
    """An in-memory array (and optional metadata columns); travels to actors by value."""

    kind = "array"

    def __init__(
        self, array: np.ndarray, metadata: dict[str, np.ndarray] | None = None, name: str = "in-memory array"
    ) -> None:
        array = np.asarray(array)
        _check_matrix(array.shape, array.dtype, name)
        self.array = array
        self.name = name
        self.metadata = dict(metadata or {})
        for key, col in self.metadata.items():
            if len(col) != len(array):
                raise ValueError(f"{name}: metadata column {key!r} has {len(col)} rows, embeddings {len(array)}")

    @property
    def n_rows(self) -> int:
        return int(self.array.shape[0])

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def describe(self) -> str:
        return self.name

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    def metadata_columns(self) -> list[str]:
        return list(self.metadata)

    def read_column(self, name: str) -> np.ndarray:
        if name not in self.metadata:
            return super().read_column(name)
        return np.asarray(self.metadata[name])


class NpySource(EmbeddingSource):
    """A ``.npy`` file opened as a read-only memmap."""

    kind = "npy"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"npy source not found: {self.path}")
        try:
            arr = np.load(self.path, mmap_mode="r")
        except ValueError as e:
            raise ValueError(f"{self.path}: not a readable .npy file: {e}") from e
        _check_matrix(arr.shape, arr.dtype, self.path)
        self._shape = arr.shape

    @property
    def n_rows(self) -> int:
        return int(self._shape[0])

    @property
    def dim(self) -> int:
        return int(self._shape[1])

    def describe(self) -> str:
        return self.path

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")[start:stop]


class ZarrSource(EmbeddingSource):
    """A 2-D zarr array (``path`` to the array, or to a group plus ``array`` name)."""

    kind = "zarr"

    def __init__(self, path: str | os.PathLike[str], array: str | None = None) -> None:
        self.path = os.fspath(path)
        self.array_name = array
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"zarr source not found: {self.path}")
        arr = self._open()
        _check_matrix(arr.shape, arr.dtype, self.describe())
        self._shape = arr.shape
        self._chunk_rows = int(arr.chunks[0])

    def _open(self) -> Any:
        import zarr

        try:
            node = zarr.open(self.path, mode="r")
        except Exception as e:  # zarr raises several types for a non-zarr folder
            raise ValueError(f"{self.path}: not a readable zarr store: {e}") from e
        if isinstance(node, zarr.Group):
            if self.array_name is None or self.array_name not in node:
                raise ValueError(
                    f"{self.path}: is a zarr group; name the embedding array (have: {sorted(node.array_keys())})"
                )
            node = node[self.array_name]
        return node

    @property
    def n_rows(self) -> int:
        return int(self._shape[0])

    @property
    def dim(self) -> int:
        return int(self._shape[1])

    @property
    def chunk_rows(self) -> int:
        return self._chunk_rows

    def describe(self) -> str:
        return self.path if self.array_name is None else f"{self.path}/{self.array_name}"

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._open()[start:stop])
