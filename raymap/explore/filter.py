"""Filter a dataset with pushdown and column projection, and account for the bytes the scan reads."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from raymap.sources import EmbeddingSource, ParquetSource, open_source
from raymap.sources.parquet import Filter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadStats:
    """What a filtered scan touches, from file sizes and the footers of the files it opens.

    Non-matching partitions are pruned before any file is opened, so their files are only
    counted by size (``os.stat``), never read.
    """

    rows_matched: int  # rows that pass the filter
    rows_read: int  # rows of the row groups read (statistics cannot prune inside a row group)
    files_total: int  # data files in the dataset
    files_read: int  # files holding matching row groups
    row_groups_read: int  # row groups holding matching rows
    bytes_total: int  # on-disk size of every data file
    bytes_read: int  # compressed bytes of the projected (and filtered) columns in the row groups read

    @property
    def share_read(self) -> float:
        """Fraction of the dataset's bytes the scan reads."""
        return self.bytes_read / self.bytes_total if self.bytes_total else 1.0


@dataclass(frozen=True, slots=True)
class Filtered:
    """Matching rows of a dataset: the embedding source (row id = position among matches) plus metadata columns."""

    source: EmbeddingSource
    columns: list[str]  # metadata columns projected for the points table
    stats: ReadStats | None  # None for non-Parquet sources (nothing is pruned there)


def parse_filter_text(pairs: list[str], path: str | os.PathLike[str]) -> dict[str, Any]:
    """``["family=Family01,Family02", "img_type=photo"]`` -> a dict filter with values cast to column types.

    Text comes from a command line or a form; each value is cast to its column's Arrow type,
    so ``score=abc`` on a float column is a ValueError naming column, type and value.
    """
    schema = _dataset(os.fspath(path)).schema
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"filter {pair!r}: expected column=value[,value...]")
        if name not in schema.names:
            raise ValueError(f"{path}: filter on unknown column {name!r}; columns: {schema.names}")
        field_type = schema.field(name).type
        values = []
        for raw in text.split(","):
            try:
                values.append(pa.array([raw.strip()]).cast(field_type)[0].as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ValueError(f"{path}: filter value {raw!r} for column {name!r} is not a {field_type}: {e}") from e
        out[name] = values[0] if len(values) == 1 else values
    return out


def _dataset(path: str) -> ds.Dataset:
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset not found: {path}")
    try:
        return ds.dataset(path, format="parquet", partitioning="hive")
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet dataset: {e}") from e


def _filter_columns(filter: Filter, schema: pa.Schema) -> set[str]:
    """Columns a filter reads: the keys of a dict; for an expression, the schema names it mentions (upper bound)."""
    if filter is None:
        return set()
    if isinstance(filter, dict):
        return set(filter)
    text = str(filter)
    return {name for name in schema.names if name in text}


def read_stats(source: ParquetSource, columns: list[str], filter: Filter) -> ReadStats:
    """Rows and bytes a scan of ``columns`` (plus the filter's columns) over ``source``'s row groups reads."""
    dataset = _dataset(source.path)
    wanted = set(columns) | {source.column} | _filter_columns(filter, dataset.schema)
    groups: dict[str, list[int]] = {}
    for path, rg, _ in source.row_groups:
        groups.setdefault(path, []).append(rg)
    rows_read = bytes_read = 0
    for path, row_groups in groups.items():
        meta = pq.read_metadata(path)
        for rg in row_groups:
            group = meta.row_group(rg)
            rows_read += group.num_rows
            for j in range(group.num_columns):
                chunk = group.column(j)
                if chunk.path_in_schema.split(".")[0] in wanted:
                    bytes_read += chunk.total_compressed_size
    return ReadStats(
        rows_matched=source.n_rows,
        rows_read=rows_read,
        files_total=len(dataset.files),
        files_read=len(groups),
        row_groups_read=len(source.row_groups),
        bytes_total=sum(os.path.getsize(f) for f in dataset.files),
        bytes_read=bytes_read,
    )


def open_filtered(data: Any, filter: Filter = None, columns: list[str] | None = None, column: str = "emb") -> Filtered:
    """Open ``data`` with ``filter`` pushed into the scan and the metadata ``columns`` projected.

    Parquet: partitions that cannot match are pruned from their paths and row groups from
    their statistics (``ParquetSource``); ``columns`` defaults to every non-embedding column.
    Other sources take no filter (ValueError) and project their own metadata columns.
    """
    source = open_source(data, column=column, filter=filter)
    if filter is not None and not isinstance(source, ParquetSource):
        raise ValueError(f"{source.describe()}: filters need a Parquet dataset, this is a {source.kind} source")
    available = source.metadata_columns()
    if columns is None:
        columns = available
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise ValueError(f"{source.describe()}: unknown column(s) {unknown}; metadata columns: {available}")
    stats = None
    if isinstance(source, ParquetSource):
        stats = read_stats(source, columns, filter)
        log.info(
            "filter %s: %d rows in %d/%d files, %.1f%% of the bytes",
            source.filter,
            stats.rows_matched,
            stats.files_read,
            stats.files_total,
            100 * stats.share_read,
        )
    return Filtered(source, list(columns), stats)


def iter_column_tables(source: EmbeddingSource, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """``(row_start, table)`` of metadata ``columns`` in row order, one row group at a time for Parquet."""
    if isinstance(source, ParquetSource):
        yield from source.iter_tables(columns)
        return
    yield 0, pa.table({name: source.read_column(name) for name in columns})


def read_metadata(source: EmbeddingSource, columns: list[str], rows: np.ndarray | None = None) -> pa.Table:
    """``row_id`` plus metadata ``columns`` for sorted ``rows`` (all when None), one row group at a time."""
    if rows is None:
        rows = np.arange(source.n_rows, dtype=np.int64)
    if not columns:
        return pa.table({"row_id": rows})
    parts: list[pa.Table] = []
    for start, table in iter_column_tables(source, columns):
        lo, hi = np.searchsorted(rows, [start, start + table.num_rows])
        if hi > lo or not parts:  # keep one (maybe empty) part for the schema
            parts.append(table.take(pa.array(rows[lo:hi] - start)))
    out = pa.concat_tables(parts)
    return out.add_column(0, "row_id", pa.array(rows, pa.int64()))
