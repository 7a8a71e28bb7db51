"""The EmbeddingSource interface: lazy, order-preserving float32 row batches under a memory budget."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from raymap._parse import parse_bytes

if TYPE_CHECKING:
    import ray.data

# Rows that go into a content fingerprint: evenly spaced, so a change anywhere in a
# sorted table and a change of length both show, without reading the whole source.
FINGERPRINT_ROWS = 17
DEFAULT_CHUNK_ROWS = 65_536


class NonFiniteRowsError(ValueError):
    """Rows holding NaN or inf: the message names the source, the count and the first row ids."""


def plan_batches(n_rows: int, batch_rows: int, start: int = 0) -> list[tuple[int, int]]:
    """Cut ``[start, n_rows)`` into ``(start, stop)`` ranges of ``batch_rows`` (last one shorter)."""
    return [(s, min(s + batch_rows, n_rows)) for s in range(start, n_rows, batch_rows)]


def rows_for_budget(memory_budget: int | str, bytes_per_row: int, align: int = 1) -> int:
    """Rows that fit ``memory_budget`` at ``bytes_per_row``, rounded down to a multiple of ``align``."""
    budget = parse_bytes(memory_budget)
    rows = max(1, budget // max(1, bytes_per_row))
    return max(align, rows // align * align) if rows >= align else rows


def check_finite(block: np.ndarray, row_start: int, where: str) -> None:
    """Raise :class:`NonFiniteRowsError` naming ``where`` if any row of ``block`` has NaN/inf."""
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite) + row_start
        raise NonFiniteRowsError(
            f"{where}: {bad.size} row(s) hold NaN or inf in rows {row_start}..{row_start + len(block) - 1}; "
            f"first row ids: {bad[:10].tolist()}"
        )


class EmbeddingSource(ABC):
    """Rows of a 2-D float32 embedding table, read lazily by global row id (position).

    Implementations only say how to read a row range; batching, finiteness checks,
    fingerprints and Ray datasets are shared here so every kind behaves the same.
    Sources are small picklable descriptors: a Ray actor given one reads its own rows.
    """

    kind: ClassVar[str]

    @property
    @abstractmethod
    def n_rows(self) -> int:
        """Number of rows (after any filter)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding width."""

    @property
    def chunk_rows(self) -> int:
        """Natural read granularity (Parquet row group, zarr chunk); batches align to it."""
        return DEFAULT_CHUNK_ROWS

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as an array convertible to float32, shape ``(stop - start, dim)``."""

    @abstractmethod
    def describe(self) -> str:
        """Where the rows come from, for messages: a path or a short description."""

    def metadata_columns(self) -> list[str]:
        """Names of per-row metadata columns (labels, numeric fields)."""
        return []

    def read_column(self, name: str) -> np.ndarray:
        """One metadata column for all rows, in row order."""
        raise KeyError(f"{self.describe()}: no metadata column {name!r}; available: {self.metadata_columns()}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def read(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        """Rows ``[start, stop)`` as C-contiguous float32; NaN/inf rows raise unless ``check=False``."""
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"{self.describe()}: rows [{start}, {stop}) outside [0, {self.n_rows})")
        block = np.ascontiguousarray(self._read(start, stop), dtype=np.float32)
        if block.shape != (stop - start, self.dim):
            raise ValueError(
                f"{self.describe()}: expected rows of shape {(stop - start, self.dim)}, read {block.shape}"
            )
        if check:
            check_finite(block, start, self.describe())
        return block

    def take(self, rows: np.ndarray, check: bool = True) -> np.ndarray:
        """Rows at sorted, unique ids (a gather for streamed transfer), as float32 ``(len(rows), dim)``.

        Reads one span per touched chunk (from its first to its last wanted row), so a row group
        or zarr chunk is read at most once and untouched chunks not at all.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= self.n_rows or (np.diff(rows) <= 0).any()):
            raise ValueError(f"{self.describe()}: take() needs sorted unique row ids in [0, {self.n_rows})")
        out = np.empty((rows.size, self.dim), np.float32)
        cuts = np.flatnonzero(np.diff(rows // self.chunk_rows)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, rows.size], strict=True):
            if hi > lo:
                span = self.read(int(rows[lo]), int(rows[hi - 1]) + 1, check=check)
                out[lo:hi] = span[rows[lo:hi] - rows[lo]]
        return out

    def batch_rows_for(self, memory_budget: int | str) -> int:
        """Batch size from a memory budget: whole chunks when they fit, else fewer rows."""
        # 2x: the Arrow/zarr buffer and the float32 copy can coexist while a batch is built.
        return rows_for_budget(memory_budget, 2 * 4 * self.dim, align=min(self.chunk_rows, self.n_rows))

    def iter_batches(
        self, memory_budget: int | str = "256MiB", batch_rows: int | None = None, check: bool = True
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row_start, block)`` in row order; one block in memory at a time."""
        rows = batch_rows or self.batch_rows_for(memory_budget)
        for start, stop in plan_batches(self.n_rows, rows):
            yield start, self.read(start, stop, check=check)

    def check_finite(self, memory_budget: int | str = "256MiB") -> None:
        """Scan every row once; raise :class:`NonFiniteRowsError` listing the first bad row ids."""
        bad: list[int] = []
        total = 0
        for start, block in self.iter_batches(memory_budget, check=False):
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                ids = np.flatnonzero(~finite) + start
                total += ids.size
                bad.extend(ids[: 10 - len(bad)].tolist())
        if total:
            raise NonFiniteRowsError(f"{self.describe()}: {total} row(s) hold NaN or inf; first row ids: {bad}")

    def fingerprint(self) -> str:
        """Content fingerprint: shape plus evenly spaced rows, equal across source kinds.

        Computed once per source object (each sampled row may cost a row-group read).
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is None:
            cached = self._fingerprint = self._compute_fingerprint()
        return cached

    def _compute_fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(np.array([self.n_rows, self.dim], dtype=np.int64).tobytes())
        if self.n_rows:
            for i in np.unique(np.linspace(0, self.n_rows - 1, FINGERPRINT_ROWS).astype(np.int64)):
                h.update(self.read(int(i), int(i) + 1, check=False).tobytes())
        return h.hexdigest()

    def to_ray_dataset(self, memory_budget: int | str = "256MiB") -> ray.data.Dataset:
        """A Ray Dataset with columns ``row_id`` and ``emb`` whose read tasks each read one batch.

        Only batch descriptors are created on the driver; rows are read inside Ray tasks.
        """
        import ray.data

        rows = self.batch_rows_for(memory_budget)
        items = [{"start": s, "stop": e} for s, e in plan_batches(self.n_rows, rows)]
        source = self

        def read_unit(batch: dict[str, Any]) -> dict[str, np.ndarray]:
            starts, stops = batch["start"], batch["stop"]
            ids = np.concatenate([np.arange(s, e) for s, e in zip(starts, stops, strict=True)])
            emb = np.concatenate([source.read(int(s), int(e)) for s, e in zip(starts, stops, strict=True)])
            return {"row_id": ids, "emb": emb}

        return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            read_unit, batch_size=1, batch_format="numpy"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()}, n_rows={self.n_rows}, dim={self.dim})"
