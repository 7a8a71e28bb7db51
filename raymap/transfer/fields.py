"""Transfer fields: what is carried from the reference (label codes, in-memory or on-disk values), checked up front."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from raymap._parse import parse_choice
from raymap.sources import EmbeddingSource, ParquetSource, open_source

KINDS = ("categorical", "numeric")
UNKNOWN = "unknown"


class Rows(Protocol):
    """Reference rows read by sorted unique ids: the gather each streamed chunk needs."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def take(self, ids: np.ndarray) -> np.ndarray: ...


class ArrayRows:
    """Rows of an in-memory array (1-D or 2-D), or of a zarr array (``oindex`` reads only touched chunks)."""

    def __init__(self, array: Any) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def take(self, ids: np.ndarray) -> np.ndarray:
        if isinstance(self.array, np.ndarray):
            return self.array[ids]
        return np.asarray(self.array.oindex[ids])


class SourceRows:
    """Rows of an :class:`EmbeddingSource` (Parquet list column, zarr, AnnData X/obsm, .npy) via ``take``."""

    def __init__(self, source: EmbeddingSource) -> None:
        self.source = source

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.n_rows, self.source.dim

    def take(self, ids: np.ndarray) -> np.ndarray:
        return self.source.take(ids)


@dataclass(frozen=True, slots=True)
class Field:
    """One transferred field."""

    name: str
    kind: str  # "categorical" or "numeric"
    rows: Rows  # reference rows: label codes (categorical) or values (numeric)
    categories: tuple[str, ...] = ()  # categorical: names of the codes

    @property
    def width(self) -> int:
        """Columns of the result per query row: one score per category, or the value columns."""
        if self.kind == "categorical":
            return len(self.categories)
        return int(np.prod(self.rows.shape[1:], dtype=np.int64))

    @property
    def value_shape(self) -> tuple[int, ...]:
        """Trailing shape of a numeric result row (``()`` for a 1-D field)."""
        return tuple(self.rows.shape[1:])


def parse_transfer(spec: dict[str, Any], reference: EmbeddingSource | None) -> dict[str, tuple[str, Any]]:
    """``{name: kind | (kind, data)}`` -> ``{name: (kind, data or None)}``, checked before any work.

    A bare kind names a column of the reference's metadata, which must exist. ``data`` is an
    array, an :class:`EmbeddingSource`, a path (opened with ``open_source``) or a zarr array.
    """
    out: dict[str, tuple[str, Any]] = {}
    for name, value in spec.items():
        kind, data = (value, None) if isinstance(value, str) else value
        parse_choice(kind, KINDS, f"transfer kind for {name!r}")
        if data is None and (reference is None or name not in reference.metadata_columns()):
            have = reference.metadata_columns() if reference is not None else []
            raise ValueError(f"transfer: reference has no column {name!r}; columns: {have}")
        out[name] = (kind, data)
    return out


def encode_labels(labels: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    """Category codes (sorted names) of a reference label column; missing labels are an error."""
    import pandas as pd

    series = pd.Series(np.asarray(labels, dtype=object))
    missing = series.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"transfer: label column {name!r} has {int(missing.sum())} missing value(s), "
            f"first at reference rows {np.flatnonzero(missing)[:10].tolist()}"
        )
    codes, categories = pd.factorize(series.astype(str), sort=True)
    return codes.astype(np.int32), [str(c) for c in categories]


def _reference_column(reference: EmbeddingSource, name: str) -> Any:
    """A metadata column: a lazy source when a Parquet reference stores it as a list column, else its values."""
    if isinstance(reference, ParquetSource):
        import pyarrow as pa
        import pyarrow.dataset as ds

        field_type = ds.dataset(reference.path, format="parquet", partitioning="hive").schema.field(name).type
        storage = field_type.storage_type if isinstance(field_type, pa.ExtensionType) else field_type
        if pa.types.is_list(storage) or pa.types.is_fixed_size_list(storage) or pa.types.is_large_list(storage):
            return ParquetSource(reference.path, column=name, filter=reference.filter)
    return reference.read_column(name)


def _numeric_rows(name: str, data: Any) -> Rows:
    if isinstance(data, str | os.PathLike):
        data = open_source(data)
    if isinstance(data, EmbeddingSource):
        return SourceRows(data)
    if hasattr(data, "oindex") and not isinstance(data, np.ndarray):  # a zarr array, read lazily
        return ArrayRows(data)
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"transfer: numeric field {name!r} is not numeric: {e}") from e
    if values.ndim not in (1, 2):
        raise ValueError(f"transfer: numeric field {name!r} must be 1-D or 2-D, got shape {values.shape}")
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"transfer: numeric field {name!r} has NaN/inf at reference rows {np.flatnonzero(~finite)[:10].tolist()}"
        )
    return ArrayRows(values)


def build_fields(spec: dict[str, Any], reference: EmbeddingSource | None, n_reference: int) -> list[Field]:
    """Resolve every field of ``spec`` to its reference rows; wrong row counts fail before any pass."""
    fields = []
    for name, (kind, data) in parse_transfer(spec, reference).items():
        if data is None:
            assert reference is not None  # parse_transfer found the column there
            data = _reference_column(reference, name)
        if kind == "categorical":
            codes, categories = encode_labels(data, name)
            field = Field(name, kind, ArrayRows(codes), tuple(categories))
        else:
            field = Field(name, kind, _numeric_rows(name, data))
        if field.rows.shape[0] != n_reference:
            raise ValueError(
                f"transfer: field {name!r} has {field.rows.shape[0]} rows, the reference has {n_reference}"
            )
        fields.append(field)
    return fields
