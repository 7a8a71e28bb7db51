"""Parquet files and hive-partitioned datasets as an EmbeddingSource, with filter pushdown."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from raymap.sources.base import EmbeddingSource

Filter = ds.Expression | dict[str, Any] | None


def parse_filter(filter: Filter, schema: pa.Schema, where: str) -> ds.Expression | None:
    """A pyarrow expression from an expression or ``{column: value | [values]}``.

    Dict filters are checked against the schema: an unknown column or a value of the
    wrong type is a ValueError naming both, before anything is read.
    """
    if filter is None or isinstance(filter, ds.Expression):
        return filter
    if not isinstance(filter, dict):
        raise ValueError(f"{where}: filter must be a dict or a pyarrow expression, got {type(filter).__name__}")
    expr: ds.Expression | None = None
    for name, value in filter.items():
        if name not in schema.names:
            raise ValueError(f"{where}: filter on unknown column {name!r}; columns: {schema.names}")
        field_type = schema.field(name).type
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        for v in values:
            try:
                pa.scalar(v, type=field_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                raise ValueError(
                    f"{where}: filter value {v!r} for column {name!r} does not fit its type {field_type}"
                ) from None
        term = pc.field(name) == values[0] if len(values) == 1 else pc.field(name).isin(values)
        expr = term if expr is None else expr & term
    return expr


def arrow_to_matrix(column: pa.ChunkedArray | pa.Array, where: str) -> np.ndarray:
    """A list-like Arrow column of numbers -> 2-D numpy array, without copies where Arrow allows.

    Accepts fixed-size lists, the canonical fixed-shape tensor extension and variable
    lists whose rows all have the same length; ragged, null or non-numeric rows raise.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = []
    for chunk in chunks:
        if isinstance(chunk.type, pa.ExtensionType):
            chunk = chunk.storage
        if not (
            pa.types.is_fixed_size_list(chunk.type)
            or pa.types.is_list(chunk.type)
            or pa.types.is_large_list(chunk.type)
        ):
            raise ValueError(f"{where}: embedding column must be a list of numbers, got {chunk.type}")
        value_type = chunk.type.value_type
        if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
            raise ValueError(f"{where}: embedding values must be numeric, got {value_type}")
        if chunk.null_count:
            raise ValueError(f"{where}: {chunk.null_count} embedding row(s) are null")
        if pa.types.is_fixed_size_list(chunk.type):
            width = chunk.type.list_size
        else:
            lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
            width = int(lengths[0]) if len(lengths) else 0
            if len(lengths) and (lengths != width).any():
                bad = int(np.flatnonzero(lengths != width)[0])
                raise ValueError(
                    f"{where}: ragged embeddings: row {bad} of a batch has {int(lengths[bad])} values, "
                    f"the first has {width}"
                )
        values = chunk.flatten().to_numpy(zero_copy_only=False)
        out.append(values.reshape(len(chunk), width))
    if len(out) == 1:
        return out[0]
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


@dataclass(frozen=True, slots=True)
class _Piece:
    """One Parquet row group that holds matching rows."""

    path: str
    row_group: int
    n_rows: int
    partition_expression: ds.Expression


class ParquetSource(EmbeddingSource):
    """A Parquet file or (hive-partitioned) directory; ``filter`` is pushed down into the scan.

    Row ids are positions among the matching rows in file/row-group order. The plan
    (which row groups hold how many matching rows) is built once from footers and,
    when the filter touches non-partition columns, from those columns alone.
    """

    kind = "parquet"

    def __init__(self, path: str | os.PathLike[str], column: str = "emb", filter: Filter = None) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"Parquet source not found: {self.path}")
        self.column = column
        dataset = self._dataset()
        if column not in dataset.schema.names:
            raise ValueError(f"{self.path}: no embedding column {column!r}; columns: {dataset.schema.names}")
        self._schema = dataset.schema
        self.filter = parse_filter(filter, dataset.schema, self.path)
        self._pieces = self._plan(dataset)
        self._offsets = np.concatenate([[0], np.cumsum([p.n_rows for p in self._pieces])]).tolist()
        if self.n_rows == 0:
            raise ValueError(
                f"{self.path}: no rows" + (f" match filter {self.filter}" if self.filter is not None else "")
            )
        col_type = dataset.schema.field(column).type
        storage = col_type.storage_type if isinstance(col_type, pa.ExtensionType) else col_type
        fixed = pa.types.is_fixed_size_list(storage) and pa.types.is_floating(storage.value_type)
        self._dim = storage.list_size if fixed else self._read_piece(0).shape[1]
        self._cache: tuple[int, np.ndarray] | None = None

    def _dataset(self) -> ds.Dataset:
        try:
            return ds.dataset(self.path, format="parquet", partitioning="hive")
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{self.path}: not a readable Parquet dataset: {e}") from e

    def _plan(self, dataset: ds.Dataset) -> list[_Piece]:
        pieces = []
        for fragment in dataset.get_fragments(filter=self.filter):  # prunes partitions
            for rg in fragment.split_by_row_group(filter=self.filter, schema=dataset.schema):  # prunes by statistics
                n = rg.row_groups[0].num_rows if self.filter is None else self._scan(rg, []).count_rows()
                if n:
                    pieces.append(_Piece(rg.path, rg.row_groups[0].id, n, rg.partition_expression))
        return pieces

    def _scan(self, fragment: ds.Fragment, columns: list[str]) -> ds.Scanner:
        # The dataset schema lets the filter name partition columns absent from the file.
        return ds.Scanner.from_fragment(fragment, schema=self._schema, columns=columns, filter=self.filter)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # a cached row group must not travel to actors
        return state

    @property
    def n_rows(self) -> int:
        return int(self._offsets[-1])

    @property
    def dim(self) -> int:
        return int(self._dim)

    @property
    def chunk_rows(self) -> int:
        return max(p.n_rows for p in self._pieces)

    @property
    def pieces_read(self) -> list[str]:
        """Files that the filter left to read (partition pruning is visible here)."""
        return sorted({p.path for p in self._pieces})

    @property
    def row_groups(self) -> list[tuple[str, int, int]]:
        """``(file, row group, matching rows)`` of every row group the filter left to read, in row order."""
        return [(p.path, p.row_group, p.n_rows) for p in self._pieces]

    def iter_tables(self, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
        """``(row_start, table)`` of the named columns (partition columns too), one row group at a time."""
        unknown = [c for c in columns if c not in self._schema.names]
        if unknown:
            raise ValueError(f"{self.path}: no column(s) {unknown}; columns: {self._schema.names}")
        for i in range(len(self._pieces)):
            yield int(self._offsets[i]), self._read_piece(i, columns)

    def describe(self) -> str:
        return self.path if self.filter is None else f"{self.path} [{self.filter}]"

    def _read_piece(self, i: int, columns: list[str] | None = None) -> Any:
        piece = self._pieces[i]
        fragment = ds.ParquetFileFormat().make_fragment(
            piece.path,
            filesystem=pafs.LocalFileSystem(),
            row_groups=[piece.row_group],
            partition_expression=piece.partition_expression,
        )
        table = self._scan(fragment, columns or [self.column]).to_table()
        if columns is not None:
            return table
        return arrow_to_matrix(table.column(self.column), self.describe())

    def _read(self, start: int, stop: int) -> np.ndarray:
        first = bisect.bisect_right(self._offsets, start) - 1
        parts = []
        i = first
        while i < len(self._pieces) and self._offsets[i] < stop:
            if self._cache is not None and self._cache[0] == i:
                block = self._cache[1]
            else:
                block = self._read_piece(i)
                self._cache = (
                    i,
                    block,
                )  # consecutive small reads inside one row group read it once
            lo = max(start, self._offsets[i]) - self._offsets[i]
            hi = min(stop, self._offsets[i + 1]) - self._offsets[i]
            parts.append(block[lo:hi])
            i += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def metadata_columns(self) -> list[str]:
        return [n for n in self._schema.names if n != self.column]

    def read_column(self, name: str) -> np.ndarray:
        if name not in self.metadata_columns():
            return super().read_column(name)
        parts = [table.column(name) for _, table in self.iter_tables([name])]
        return pa.chunked_array([c for p in parts for c in p.chunks]).to_numpy(zero_copy_only=False)
