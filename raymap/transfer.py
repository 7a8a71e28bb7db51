"""Streamed transfer from reference to query, one CSR chunk of the mapping at a time.

Results go to ``transfer/<name>/`` in the store: ``labels`` (int32 codes, -1 = unknown) with
the category names in the array's attrs and ``confidence`` (float32) for categorical fields,
``values`` (float32) for numeric ones.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from raymap._parse import parse_choice
from raymap.sources import EmbeddingSource
from raymap.store import MappingStore

log = logging.getLogger(__name__)
KINDS = ("categorical", "numeric")
UNKNOWN = "unknown"


def parse_transfer(spec: dict[str, Any], reference: EmbeddingSource | None) -> dict[str, tuple[str, Any]]:
    """``{name: kind | (kind, array)}`` -> ``{name: (kind, array or None)}``, checked before any work.

    A bare kind names a column of the reference's metadata, which must exist.
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


def vote(block: sp.csr_matrix, onehot: sp.csr_matrix, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted vote of one chunk: label code and its score (rows sum to 1); empty rows -> -1, 0."""
    scores = (block @ onehot).toarray()
    labels = scores.argmax(axis=1).astype(np.int32)
    confidence = scores.max(axis=1) if scores.shape[1] else np.zeros(block.shape[0])
    confidence = np.minimum(confidence, 1.0).astype(np.float32)  # float32 row sums can exceed 1 by an ulp
    labels[(confidence <= 0) | (confidence < threshold)] = -1
    return labels, confidence


def transfer_categorical(store: MappingStore, name: str, labels: np.ndarray, threshold: float = 0.0) -> None:
    """Predicted label + confidence per query row, streamed over CSR chunks."""
    codes, categories = encode_labels(labels, name)
    _check_rows(store, codes, name)
    onehot = sp.csr_matrix(
        (np.ones(len(codes), np.float32), (np.arange(len(codes)), codes)), shape=(len(codes), len(categories))
    )
    group = store.group.require_group(f"transfer/{name}")
    shape, chunks = (store.n_query,), (store.chunk_rows,)
    out_l = group.create_array("labels", shape=shape, chunks=chunks, dtype=np.int32, overwrite=True, fill_value=-1)
    out_c = group.create_array("confidence", shape=shape, chunks=chunks, dtype=np.float32, overwrite=True)
    for start, block in store.iter_csr():
        lab, conf = vote(block, onehot, threshold)
        out_l[start : start + len(lab)] = lab
        out_c[start : start + len(conf)] = conf
    group.attrs.update({"kind": "categorical", "categories": categories, "threshold": threshold})


def transfer_numeric(store: MappingStore, name: str, values: np.ndarray) -> None:
    """``M @ values`` for a per-reference-row numeric field (1-D or rows x columns)."""
    values = np.asarray(values, dtype=np.float64)
    _check_rows(store, values, name)
    if not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
        raise ValueError(f"transfer: numeric field {name!r} has NaN/inf at reference rows {bad[:10].tolist()}")
    group = store.group.require_group(f"transfer/{name}")
    out = group.create_array(
        "values",
        shape=(store.n_query, *values.shape[1:]),
        chunks=(store.chunk_rows, *values.shape[1:]),
        dtype=np.float32,
        overwrite=True,
    )
    for start, block in store.iter_csr():
        out[start : start + block.shape[0]] = (block @ values).astype(np.float32)
    group.attrs.update({"kind": "numeric"})


def _check_rows(store: MappingStore, values: np.ndarray, name: str) -> None:
    if len(values) != store.n_reference:
        raise ValueError(f"transfer: field {name!r} has {len(values)} rows, the reference has {store.n_reference}")


def run_transfer(
    store: MappingStore, spec: dict[str, Any], reference: EmbeddingSource | None, threshold: float = 0.0
) -> None:
    """Run every field of ``spec`` (see :func:`parse_transfer`) on a complete store."""
    store.require_complete()
    for name, (kind, data) in parse_transfer(spec, reference).items():
        values = data if data is not None else reference.read_column(name)  # type: ignore[union-attr]
        log.info("transfer %s (%s)", name, kind)
        if kind == "categorical":
            transfer_categorical(store, name, values, threshold)
        else:
            transfer_numeric(store, name, values)
