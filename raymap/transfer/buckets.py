"""Out-of-core transpose: edges shuffled into row-range buckets on disk, read back one bucket at a time."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from raymap._parse import format_bytes

log = logging.getLogger(__name__)
EDGE = np.dtype([("row", np.int64), ("col", np.int64), ("val", np.float64)])  # 24 bytes per edge on disk


def bucket_rows_for(memory_budget: int, chunk_rows: int, mean_row_nnz: float) -> int:
    """Rows per bucket: a multiple of ``chunk_rows`` whose edges (x4 while a CSR is built) fit the budget."""
    per_chunk = max(1.0, chunk_rows * mean_row_nnz * EDGE.itemsize * 4)
    return chunk_rows * max(1, int(memory_budget // per_chunk))


class EdgeBuckets:
    """Append-only edge files, one per row range ``[b * bucket_rows, (b + 1) * bucket_rows)``.

    Edges are buffered in memory and appended to the bucket files whenever the buffer passes
    ``flush_bytes``, so each file sees few large writes whatever order the edges come in.
    """

    def __init__(self, folder: str | os.PathLike[str], shape: tuple[int, int], bucket_rows: int, flush_bytes: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shape = shape
        self.bucket_rows = bucket_rows
        self.flush_bytes = flush_bytes
        self.n_buckets = max(1, -(-shape[0] // bucket_rows))
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self.edges_written = 0

    def path(self, bucket: int) -> Path:
        return self.folder / f"bucket-{bucket:06d}.edges"

    def ranges(self) -> list[tuple[int, int]]:
        """Row range of every bucket."""
        return [(b * self.bucket_rows, min((b + 1) * self.bucket_rows, self.shape[0])) for b in range(self.n_buckets)]

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Queue edges ``(row, col, val)`` (row in this matrix's row space)."""
        edges = np.empty(len(rows), EDGE)
        edges["row"], edges["col"], edges["val"] = rows, cols, vals
        self._buffer.append(edges)
        self._buffered += edges.nbytes
        if self._buffered >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Append the buffered edges to their bucket files, grouped by bucket (stable order)."""
        if not self._buffer:
            return
        edges = np.concatenate(self._buffer)
        self._buffer, self._buffered = [], 0
        bucket = edges["row"] // self.bucket_rows
        order = np.argsort(bucket, kind="stable")
        edges, bucket = edges[order], bucket[order]
        cuts = np.flatnonzero(np.diff(bucket)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(edges)], strict=True):
            with open(self.path(int(bucket[lo])), "ab") as f:
                edges[lo:hi].tofile(f)
        self.edges_written += len(edges)

    def read(self, bucket: int) -> sp.csr_matrix:
        """Bucket ``bucket`` as CSR rows ``[start, stop)`` of the matrix (duplicates summed)."""
        start, stop = self.ranges()[bucket]
        path = self.path(bucket)
        edges = np.fromfile(path, dtype=EDGE) if path.exists() else np.empty(0, EDGE)
        return sp.csr_matrix((edges["val"], (edges["row"] - start, edges["col"])), shape=(stop - start, self.shape[1]))

    def __iter__(self) -> Iterator[tuple[int, sp.csr_matrix]]:
        """``(row_start, block)`` for every bucket in row order; each bucket file is deleted once read."""
        for b, (start, _) in enumerate(self.ranges()):
            block = self.read(b)
            self.path(b).unlink(missing_ok=True)
            yield start, block


def transpose_into(blocks: Iterable[tuple[int, sp.csr_matrix]], buckets: EdgeBuckets) -> None:
    """Write the transpose of a row-streamed matrix into ``buckets`` (whose rows are its columns)."""
    for start, block in blocks:
        coo = block.tocoo()
        buckets.add(coo.col.astype(np.int64), coo.row.astype(np.int64) + start, coo.data)
    buckets.flush()
    log.info(
        "transposed %d edges into %d buckets (%s on disk)",
        buckets.edges_written,
        buckets.n_buckets,
        format_bytes(buckets.edges_written * EDGE.itemsize),
    )
