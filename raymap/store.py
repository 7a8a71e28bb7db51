"""MappingStore: the zarr v3 layout of neighbours, weights, commits and transfers; read back as CSR chunks.

Layout (n = query rows, k = neighbours per row, chunks of ``chunk_rows`` rows):

    neighbors/indices   (n, k) uint32 (int64 when the reference has >= 2**32 rows), uncompressed
    neighbors/distances (n, k) float32 true distances
    mapping/data        (n, k) float32 row-normalised weights, aligned with neighbors/indices
    commits/<phase>     (n_units, 4) float64: committed flag, count, mean, M2 of the unit's distances
    transfer/<name>/... per transferred field

With fixed k the CSR matrix has ``indptr = arange(n + 1) * k`` and ``indices`` equal to
``neighbors/indices``, so neither is stored a second time (saves 4-8 bytes per entry,
120-240 GB at 1e9 x 30); :meth:`iter_csr` assembles scipy CSR blocks on read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from raymap._parse import format_bytes

PHASES = ("search", "weights")
TO_SCIPY_MAX_NNZ = 50_000_000


def id_dtype(n_reference: int) -> np.dtype:
    """uint32 ids while they fit (saves a third of the neighbour table), else int64."""
    return np.dtype(np.uint32) if n_reference < 2**32 - 1 else np.dtype(np.int64)


def fixed_width_csr(values: np.ndarray, ids: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """``(n, k)`` values at ``(n, k)`` column ids -> CSR with ``indptr = arange(n + 1) * k``, zeros dropped."""
    n, k = ids.shape
    m = sp.csr_matrix(
        (values.ravel(), ids.ravel().astype(np.int64), np.arange(n + 1, dtype=np.int64) * k), shape=(n, n_cols)
    )
    m.eliminate_zeros()
    return m


class StoreExistsError(FileExistsError):
    """The output store exists and neither ``overwrite`` nor ``resume`` was asked for."""


class StoreLockedError(RuntimeError):
    """Another live job holds the store's lock."""


class IncompleteStoreError(RuntimeError):
    """Some units of the store were never committed; read only a finished store."""


class MappingStore:
    """A mapping result on disk. Writers (shard actors) open it by path; readers stream chunks."""

    def __init__(self, path: str | os.PathLike[str], mode: Literal["r", "r+"] = "r") -> None:
        import zarr

        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"mapping store not found: {self.path}")
        try:
            self.group = zarr.open_group(self.path, mode=mode)
        except Exception as e:  # zarr raises several types for a non-store folder
            raise ValueError(f"{self.path}: not a raymap mapping store: {e}") from e
        if "raymap" not in self.group.attrs:
            raise ValueError(f"{self.path}: a zarr group but not a raymap mapping store")
        self._arrays: dict[str, Any] = {}
        self._shape: dict[str, Any] = dict(self.group.attrs)  # fixed at creation: read once

    # --- creation -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        n_query: int,
        n_reference: int,
        k: int,
        chunk_rows: int,
        attrs: dict[str, Any],
        overwrite: bool = False,
    ) -> MappingStore:
        """Lay out empty arrays; refuse an existing store unless ``overwrite``."""
        import zarr

        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise StoreExistsError(f"output store exists: {path}; pass overwrite=True to replace it or resume=True")
        # Built under a temporary name and renamed into place: a job killed while creating never
        # leaves a half-made store that would neither open nor resume.
        tmp = f"{path.rstrip('/')}.creating-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        group = zarr.open_group(tmp, mode="w")
        rows = (n_query, k)
        chunks = (min(chunk_rows, n_query), k)
        ids = id_dtype(n_reference)
        for name, dtype in (
            ("neighbors/indices", ids),
            ("neighbors/distances", np.float32),
            ("mapping/data", np.float32),
        ):
            group.create_array(name, shape=rows, chunks=chunks, dtype=dtype, compressors=None, fill_value=0)
        n_units = -(-n_query // chunk_rows)
        for phase in PHASES:
            group.create_array(
                f"commits/{phase}",
                shape=(n_units, 4),
                chunks=(1, 4),
                dtype=np.float64,
                compressors=None,
                fill_value=np.nan,
            )
        meta: dict[str, Any] = {
            "raymap": _version(),
            "n_query": n_query,
            "n_reference": n_reference,
            "k": k,
            "chunk_rows": chunk_rows,
        }
        group.attrs.update({**attrs, **meta})
        if os.path.exists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.replace(tmp, path)
        return cls(path, mode="r+")

    # --- properties -----------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def n_query(self) -> int:
        return int(self._shape["n_query"])

    @property
    def n_reference(self) -> int:
        return int(self._shape["n_reference"])

    @property
    def k(self) -> int:
        return int(self._shape["k"])

    @property
    def chunk_rows(self) -> int:
        return int(self._shape["chunk_rows"])

    def units(self) -> list[tuple[int, int]]:
        """Row ranges of the work units: one store chunk each, so writers never share a chunk."""
        return [(s, min(s + self.chunk_rows, self.n_query)) for s in range(0, self.n_query, self.chunk_rows)]

    def array(self, name: str) -> Any:
        if name not in self._arrays:
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    # --- writes (idempotent: a retried unit rewrites the same chunks) ----------------
    def write_neighbors(self, start: int, ids: np.ndarray, distances: np.ndarray) -> None:
        stop = start + len(ids)
        self.array("neighbors/indices")[start:stop] = ids.astype(self.array("neighbors/indices").dtype)
        self.array("neighbors/distances")[start:stop] = distances

    def write_weights(self, start: int, weights: np.ndarray) -> None:
        self.array("mapping/data")[start : start + len(weights)] = weights

    def commit(self, phase: str, unit: int, stats: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """Mark a unit done (one atomic chunk write) with its distance statistics."""
        self.array(f"commits/{phase}")[unit] = np.array([1.0, *stats])

    def committed(self, phase: str) -> dict[int, tuple[float, float, float]]:
        """Committed units of ``phase`` and their ``(count, mean, M2)``."""
        table = self.array(f"commits/{phase}")[:]
        done = np.flatnonzero(table[:, 0] == 1.0)
        return {int(u): (float(table[u, 1]), float(table[u, 2]), float(table[u, 3])) for u in done}

    def is_complete(self, phase: str = "weights") -> bool:
        return len(self.committed(phase)) == len(self.units())

    def require_complete(self) -> None:
        missing = len(self.units()) - len(self.committed("weights"))
        if missing:
            raise IncompleteStoreError(
                f"{self.path}: {missing} of {len(self.units())} units are not committed; "
                "finish the job (map(..., resume=True)) before reading or transferring"
            )

    # --- reads ----------------------------------------------------------------------
    def neighbors(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, distances)`` of query rows ``[start, stop)``."""
        stop = self.n_query if stop is None else stop
        return self.array("neighbors/indices")[start:stop], self.array("neighbors/distances")[start:stop]

    def csr_block(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``[start, stop)`` of the mapping matrix (query x reference), explicit zeros dropped."""
        return fixed_width_csr(
            self.array("mapping/data")[start:stop], self.array("neighbors/indices")[start:stop], self.n_reference
        )

    def iter_csr(self, chunk_rows: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]:
        """Yield ``(row_start, csr_block)`` over the whole mapping, one block in memory at a time."""
        self.require_complete()
        step = chunk_rows or self.chunk_rows
        for start in range(0, self.n_query, step):
            yield start, self.csr_block(start, min(start + step, self.n_query))

    def to_scipy(self, max_nnz: int = TO_SCIPY_MAX_NNZ) -> sp.csr_matrix:
        """The whole matrix in memory: only for small results."""
        nnz = self.n_query * self.k
        if nnz > max_nnz:
            raise MemoryError(
                f"{self.path}: {nnz:,} entries (~{format_bytes(nnz * 12)}) exceed max_nnz={max_nnz:,}; "
                "stream with iter_csr() instead"
            )
        return sp.vstack([b for _, b in self.iter_csr()], format="csr")


def _version() -> str:
    from raymap import __version__

    return __version__


class StoreLock:
    """An exclusive lock file beside the store: two jobs never write one store at once.

    A lock left by a dead process on this host is taken over; elsewhere it must be removed by hand.
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.path = Path(f"{os.fspath(store_path).rstrip('/')}.lock")

    def __enter__(self) -> StoreLock:
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise StoreLockedError(
                    f"{self.path}: store is being written by pid {holder.get('pid')} on {holder.get('host')}"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise StoreLockedError(f"{self.path}: could not take the store lock")

    def _holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return {}

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
