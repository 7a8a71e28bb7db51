"""The streamed pass: each operator chunk is read once and multiplied with every field's gathered reference rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from raymap._parse import format_bytes
from raymap.transfer.fields import Field
from raymap.transfer.graph import Operator

log = logging.getLogger(__name__)
Take = Callable[[np.ndarray], Any]  # sorted unique reference ids -> their rows (dense or sparse), float64
Sink = Callable[[int, np.ndarray], None]  # (first query row, result rows) -> written somewhere


def sub_rows_for(chunk_rows: int, mean_row_nnz: float, width: int, memory_budget: int) -> int:
    """Rows multiplied at once: the largest divisor of ``chunk_rows`` whose working set fits the budget.

    Per row: up to ``mean_row_nnz`` gathered reference rows and one result row, float64, twice
    (gather + product), plus the sparse block itself. A divisor keeps sub-blocks aligned to the
    output's zarr chunks, so no chunk is written twice.
    """
    per_row = (mean_row_nnz + 1) * max(width, 1) * 8 * 2 + mean_row_nnz * 24
    target = max(1, int(memory_budget // per_row))
    if target >= chunk_rows:
        return chunk_rows
    return next(chunk_rows // m for m in range(2, chunk_rows + 1) if chunk_rows % m == 0 and chunk_rows // m <= target)


def localise(block: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """The block's sorted unique column ids, and the block with columns renumbered into them (float64)."""
    ids = np.unique(block.indices)
    local = sp.csr_matrix(
        (block.data.astype(np.float64), np.searchsorted(ids, block.indices), block.indptr),
        shape=(block.shape[0], ids.size),
    )
    return ids.astype(np.int64), local


def field_take(field: Field) -> Take:
    """Rows of a field at step 0: one-hot label codes (sparse) or numeric values (dense, 2-D)."""
    if field.kind == "categorical":
        n_cat = len(field.categories)

        def onehot(ids: np.ndarray) -> sp.csr_matrix:
            codes = np.asarray(field.rows.take(ids), dtype=np.int64)
            return sp.csr_matrix((np.ones(ids.size), codes, np.arange(ids.size + 1)), shape=(ids.size, n_cat))

        return onehot

    def values(ids: np.ndarray) -> np.ndarray:
        return np.asarray(field.rows.take(ids), dtype=np.float64).reshape(ids.size, -1)

    return values


def stream_pass(op: Operator, takes: Sequence[Take], sinks: Sequence[Sink], chunk_rows: int, sub_rows: int) -> None:
    """One pass over ``op``: for every sub-block, ``sink(start, block @ take(ids))`` per field."""
    for start, block in op.iter_csr(chunk_rows):
        for lo in range(0, block.shape[0], sub_rows):
            ids, local = localise(block[lo : lo + sub_rows])
            for take, sink in zip(takes, sinks, strict=True):
                product = local @ take(ids)
                sink(start + lo, product.toarray() if sp.issparse(product) else np.asarray(product))


class DiffusionState:
    """``M^s @ field`` between diffusion steps: in memory when it fits, else a float64 zarr array."""

    def __init__(self, n_rows: int, width: int, sub_rows: int, scratch: Any | None, name: str) -> None:
        shape = (n_rows, width)
        if scratch is None:
            self.array: Any = np.zeros(shape)
        else:
            chunks = (sub_rows, width)
            self.array = scratch.create_array(name, shape=shape, chunks=chunks, dtype=np.float64, overwrite=True)

    def write(self, start: int, rows: np.ndarray) -> None:
        self.array[start : start + len(rows)] = rows

    def take(self, ids: np.ndarray) -> np.ndarray:
        if isinstance(self.array, np.ndarray):
            return self.array[ids]
        return np.asarray(self.array.oindex[ids])


def diffuse(
    op: Operator,
    fields: Sequence[Field],
    sinks: Sequence[Sink],
    t: int,
    chunk_rows: int,
    sub_rows: int,
    memory_budget: int,
    scratch: Callable[[], Any],
) -> None:
    """``sink(M^t @ field)`` for every field: ``t`` streamed passes, all fields sharing each pass.

    Between passes ``M^s @ field`` lives in memory when two generations fit half the budget,
    otherwise in zarr arrays from ``scratch()`` (read back by gathers like the reference).
    """
    n = op.shape[0]
    width = sum(f.width for f in fields)
    state_bytes = 2 * n * width * 8
    group = None if state_bytes <= memory_budget // 2 else scratch()
    log.info(
        "transfer pass 1/%d over %d rows (%d fields); diffusion state %s %s",
        t,
        n,
        len(fields),
        format_bytes(state_bytes),
        "in memory" if group is None else "in zarr",
    )
    takes = [field_take(f) for f in fields]
    for step in range(1, t + 1):
        if step == t:
            stream_pass(op, takes, sinks, chunk_rows, sub_rows)
            return
        states = [DiffusionState(n, f.width, sub_rows, group, f"{f.name}.{step % 2}") for f in fields]
        stream_pass(op, takes, [s.write for s in states], chunk_rows, sub_rows)
        takes = [s.take for s in states]
        log.info("transfer pass %d/%d done", step, t)
