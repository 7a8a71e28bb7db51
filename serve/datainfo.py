"""What the pickers show about a dataset: size, dimension and its metadata columns with their kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from raymap.sources import ParquetSource, open_source

_ID_LIKE = re.compile(r"(^|_)(id|uuid|identifier)$", re.IGNORECASE)


def is_identifier(column: str) -> bool:
    """``cell_id``, ``uuid``, ``identifier``: one value per row, never a label or a colour."""
    return bool(_ID_LIKE.search(column))


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A dataset as the page describes it.

    Attributes
    ----------
    n_rows, dim
        Rows and embedding width (read from footers / array shapes, not from the data).
    columns
        Metadata column -> ``"categorical"`` (strings, booleans, integers) or ``"numeric"`` (floats).
    """

    n_rows: int
    dim: int
    columns: dict[str, str]

    def describe(self) -> str:
        return f"{self.n_rows:,} rows × {self.dim}-D, columns: {', '.join(self.columns) or 'none'}"


def column_kind(arrow_type: pa.DataType) -> str | None:
    """Transfer kind of an Arrow type; ``None`` for columns that are neither (lists, binary)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_floating(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "categorical"
    if pa.types.is_boolean(arrow_type) or pa.types.is_integer(arrow_type):
        return "categorical"
    return None


def dataset_info(path: Path) -> DatasetInfo:
    """Describe ``path`` (already checked to lie inside the data roots)."""
    source = open_source(path)
    columns: dict[str, str] = {}
    if isinstance(source, ParquetSource):
        schema = ds.dataset(path, format="parquet", partitioning="hive").schema
        for name in source.metadata_columns():
            kind = column_kind(schema.field(name).type)
            if kind:
                columns[name] = kind
    else:  # AnnData obs and in-memory metadata: small per-row vectors
        for name in source.metadata_columns():
            values = np.asarray(source.read_column(name))
            columns[name] = "numeric" if np.issubdtype(values.dtype, np.floating) else "categorical"
    return DatasetInfo(source.n_rows, source.dim, columns)
