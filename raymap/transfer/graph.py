"""Mapping operators that transfer streams over: the store's fixed-k matrix or a variable-width CSR graph in zarr."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from raymap.store import MappingStore, id_dtype

GRAPHS = "graphs"  # store subgroup holding derived operators (symmetrised, joint kernels, transposes)
GRAPH_CHUNK = 1 << 20  # entries per zarr chunk of indices/data (4-8 MiB)


class Operator(Protocol):
    """A row-streamable sparse matrix: what a transfer multiplies with."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def mean_row_nnz(self) -> float: ...

    def iter_csr(self, chunk_rows: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]: ...


class StoreMatrix:
    """The store's own mapping matrix: k row-normalised weights per row (``mapping/data``)."""

    def __init__(self, store: MappingStore) -> None:
        self.store = store

    @property
    def shape(self) -> tuple[int, int]:
        return self.store.n_query, self.store.n_reference

    @property
    def mean_row_nnz(self) -> float:
        return float(self.store.k)

    def iter_csr(self, chunk_rows: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]:
        return self.store.iter_csr(chunk_rows)


class CSRGraph:
    """A CSR matrix in a zarr group, written row block by row block in order.

    ``indptr`` (n_rows + 1,) int64; ``indices`` (nnz,) uint32/int64; ``data`` (nnz,) float32.
    Rows may have any number of entries (a symmetrised kNN graph, a Jaccard kernel), so a
    row range maps to a slice found through ``indptr``. ``attrs["complete"]`` is set last.
    """

    def __init__(self, group: Any) -> None:
        self.group = group
        self._a = {key: group[key] for key in ("indptr", "indices", "data")}  # handles: metadata read once
        self._rows_written = int(group.attrs.get("rows_written", 0))
        self._nnz = int(group.attrs.get("nnz", 0))

    @classmethod
    def create(cls, parent: Any, name: str, shape: tuple[int, int], attrs: dict[str, Any] | None = None) -> CSRGraph:
        """An empty graph ``parent/name`` (replacing any old one) of ``shape``."""
        group = parent.require_group(GRAPHS).create_group(name, overwrite=True)
        n_rows, n_cols = shape
        indptr = group.create_array(
            "indptr", shape=(n_rows + 1,), chunks=(min(n_rows + 1, GRAPH_CHUNK),), dtype=np.int64, compressors=None
        )
        indptr[0:1] = np.zeros(1, np.int64)
        for key, dtype in (("indices", id_dtype(n_cols)), ("data", np.float32)):
            group.create_array(key, shape=(0,), chunks=(GRAPH_CHUNK,), dtype=dtype, compressors=None)
        group.attrs.update({**(attrs or {}), "n_rows": n_rows, "n_cols": n_cols, "complete": False})
        return cls(group)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.group.attrs["n_rows"]), int(self.group.attrs["n_cols"])

    @property
    def complete(self) -> bool:
        return bool(self.group.attrs.get("complete", False))

    @property
    def nnz(self) -> int:
        return self._nnz

    @property
    def mean_row_nnz(self) -> float:
        return self._nnz / max(1, self.shape[0])

    def append(self, block: sp.csr_matrix) -> None:
        """Write ``block`` as the next rows (sorted column ids within each row)."""
        block = sp.csr_matrix(block)
        block.sort_indices()
        n_rows, n_cols = self.shape
        if block.shape[1] != n_cols or self._rows_written + block.shape[0] > n_rows:
            raise ValueError(
                f"graph {self.group.path}: block of shape {block.shape} does not fit after row "
                f"{self._rows_written} of {self.shape}"
            )
        start = self._rows_written
        self._a["indices"].append(block.indices.astype(self._a["indices"].dtype))
        self._a["data"].append(block.data.astype(np.float32))
        self._a["indptr"][start + 1 : start + block.shape[0] + 1] = self._nnz + block.indptr[1:].astype(np.int64)
        self._rows_written += block.shape[0]
        self._nnz += int(block.nnz)
        self.group.attrs.update({"rows_written": self._rows_written, "nnz": self._nnz})

    def finish(self) -> None:
        """Mark the graph readable; every row must have been written."""
        if self._rows_written != self.shape[0]:
            raise ValueError(f"graph {self.group.path}: {self._rows_written} of {self.shape[0]} rows written")
        self.group.attrs["complete"] = True

    def _require_complete(self) -> None:
        if not self.complete:
            raise RuntimeError(
                f"graph {self.group.path}: incomplete ({self._rows_written} of {self.shape[0]} rows); rebuild it"
            )

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``[start, stop)`` as CSR."""
        self._require_complete()
        indptr = np.asarray(self._a["indptr"][start : stop + 1])
        lo, hi = int(indptr[0]), int(indptr[-1])
        return sp.csr_matrix(
            (self._a["data"][lo:hi], self._a["indices"][lo:hi].astype(np.int64), indptr - lo),
            shape=(stop - start, self.shape[1]),
        )

    def iter_csr(self, chunk_rows: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]:
        """Yield ``(row_start, block)``, one block in memory at a time."""
        self._require_complete()
        n_rows = self.shape[0]
        step = chunk_rows or int(self.group.attrs.get("chunk_rows", 65_536))
        for start in range(0, n_rows, step):
            yield start, self.rows(start, min(start + step, n_rows))

    def take(self, ids: np.ndarray) -> sp.csr_matrix:
        """Rows at sorted unique ``ids`` (a gather: only the chunks holding them are read)."""
        self._require_complete()
        ids = np.asarray(ids, dtype=np.int64)
        bounds = np.asarray(self._a["indptr"].get_coordinate_selection(np.concatenate([ids, ids + 1])))
        starts, stops = bounds[: ids.size], bounds[ids.size :]
        lengths = stops - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        positions = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return sp.csr_matrix(
            (
                self._a["data"].get_coordinate_selection(positions),
                self._a["indices"].get_coordinate_selection(positions).astype(np.int64),
                indptr,
            ),
            shape=(ids.size, self.shape[1]),
        )

    def to_scipy(self) -> sp.csr_matrix:
        """The whole graph in memory: only for small graphs (tests, inspection)."""
        return self.rows(0, self.shape[0])


def graph_names(store: MappingStore) -> list[str]:
    """Derived operators stored in ``store`` (complete or not)."""
    graphs: Any = store.group.get(GRAPHS)
    return [] if graphs is None else sorted(graphs.group_keys())


def open_graph(store: MappingStore, name: str) -> CSRGraph:
    if name not in graph_names(store):
        raise KeyError(f"{store.path}: no graph {name!r}; have {graph_names(store)}")
    return CSRGraph(store.group[f"{GRAPHS}/{name}"])


def operator_for(store: MappingStore, graph: str | None = None) -> Operator:
    """The matrix a transfer uses: ``graph`` if named, else the store's default.

    A joint-kernel store (``jaccard``/``hnoca``) names its kernel graph in ``attrs["operator"]``;
    every other store uses its fixed-k mapping matrix.
    """
    store.require_complete()
    name = graph or store.attrs.get("operator")
    return StoreMatrix(store) if name is None else open_graph(store, str(name))
