"""Transferred fields read back as pandas columns or written where scverse users look: AnnData obs/obsm/layers.

Only when the result fits in memory (``max_bytes``); the store stays the source of truth.
Names follow CellMapper: ``obs["<key>_pred"]``, ``obs["<key>_conf"]``, ``obsm``/``layers["<key>_pred"]``
for matrices, ``reference.obs["presence_score"]`` and ``reference.obsm["presence_score"]`` per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from raymap._parse import format_bytes, parse_bytes
from raymap.transfer.presence import FIELD as PRESENCE

if TYPE_CHECKING:
    import pandas as pd

    from raymap.result import MappingResult


def _check_size(result: MappingResult, names: Sequence[str], n_rows: int, max_bytes: int | str) -> None:
    need = 0
    for name in names:
        group = result.field(name)
        width = int(np.prod(group["values"].shape[1:])) if group.attrs.get("kind") == "numeric" else 2
        need += n_rows * width * 8
    if need > parse_bytes(max_bytes, "max_bytes"):
        raise ValueError(
            f"{result.path}: fields {list(names)} need ~{format_bytes(need)} in memory, over max_bytes={max_bytes}; "
            "read them in row ranges (labels(name, start, stop), values(...)) instead"
        )


def frame(result: MappingResult, names: Sequence[str] | None = None, start: int = 0, stop: int | None = None) -> Any:
    """Query rows ``[start, stop)`` as a DataFrame: ``<key>_pred`` (categorical), ``<key>_conf``, 1-D numerics.

    Matrix-valued numeric fields are left out (see :func:`write_anndata`, which puts them in obsm/layers).
    """
    import pandas as pd

    columns: dict[str, Any] = {}
    for name in names if names is not None else result.query_fields():
        kind = result.field_kind(name)
        if kind == "categorical":
            categories = [*result.field(name).attrs["categories"], "unknown"]
            columns[f"{name}_pred"] = pd.Categorical(result.labels(name, start, stop), categories=categories)
            columns[f"{name}_conf"] = result.confidence(name, start, stop)
        elif kind == "numeric" and result.field(name)["values"].ndim == 1:
            columns[f"{name}_pred"] = result.values(name, start, stop)
    stop = result.store.n_query if stop is None else stop
    return pd.DataFrame(columns, index=pd.RangeIndex(start, stop))


def write_anndata(
    result: MappingResult,
    query: Any = None,
    reference: Any = None,
    names: Sequence[str] | None = None,
    layers: Sequence[str] = (),
    max_bytes: int | str = "2GiB",
) -> None:
    """Write transferred fields into ``query`` (obs, obsm, layers) and presence scores into ``reference``.

    ``layers`` names matrix fields that go to ``query.layers`` (their width must equal ``query.n_vars``);
    other matrix fields go to ``query.obsm``.
    """
    names = list(names if names is not None else result.query_fields())
    if query is not None:
        if query.n_obs != result.store.n_query:
            raise ValueError(f"query AnnData has {query.n_obs} rows, the mapping {result.store.n_query}")
        _check_size(result, names, query.n_obs, max_bytes)
        table = frame(result, names)
        for column in table.columns:
            query.obs[column] = table[column].to_numpy() if table[column].dtype != "category" else table[column].values
        for name in names:
            if result.field_kind(name) != "numeric" or result.field(name)["values"].ndim == 1:
                continue
            values = result.values(name)
            if name in layers:
                if values.shape[1] != query.n_vars:
                    raise ValueError(f"field {name!r} has {values.shape[1]} columns, query.n_vars is {query.n_vars}")
                query.layers[f"{name}_pred"] = values
            else:
                query.obsm[f"{name}_pred"] = values
    if reference is not None and PRESENCE in result.fields():
        if reference.n_obs != result.store.n_reference:
            raise ValueError(f"reference AnnData has {reference.n_obs} rows, the mapping {result.store.n_reference}")
        reference.obs[PRESENCE] = result.presence_score()
        if result.field(PRESENCE).attrs.get("groups"):
            table = result.presence_score(groups=True)
            reference.obsm[PRESENCE] = table.set_axis(reference.obs_names, axis=0)


def presence_frame(result: MappingResult) -> pd.DataFrame:
    """Per-group presence scores (reference rows x query groups)."""
    import pandas as pd

    group = result.field(PRESENCE)
    return pd.DataFrame(np.asarray(group["groups"][:]), columns=list(group.attrs["groups"]))


CONF_BINS = 10_000  # confidence quantiles (inverted CDF) from a histogram on [0, 1]: within 1e-4, any size


def field_summary(result: MappingResult, name: str, top: int = 10) -> dict[str, Any]:
    """Streamed numbers for people: label counts and confidence quantiles, value ranges, presence by label."""
    group = result.field(name)
    kind = group.attrs["kind"]
    if kind == "presence":
        return {"kind": kind, "by_reference_label": dict(group.attrs.get("by_reference_label", {}))}
    n = result.store.n_query
    step = result.store.chunk_rows
    if kind == "numeric":
        lo, hi, total = np.inf, -np.inf, 0.0
        for start in range(0, n, step):
            block = result.values(name, start, start + step)
            lo, hi, total = min(lo, float(block.min())), max(hi, float(block.max())), total + float(block.sum())
        shape = group["values"].shape
        return {"kind": kind, "shape": list(shape), "min": lo, "max": hi, "mean": total / max(1, int(np.prod(shape)))}
    categories = [*group.attrs["categories"], "unknown"]
    counts = np.zeros(len(categories), np.int64)
    hist = np.zeros(CONF_BINS, np.int64)
    for start in range(0, n, step):
        codes = np.asarray(group["labels"][start : start + step])
        counts += np.bincount(np.where(codes < 0, len(categories) - 1, codes), minlength=len(categories))
        conf = np.asarray(group["confidence"][start : start + step])
        hist += np.bincount(np.minimum((conf * CONF_BINS).astype(np.int64), CONF_BINS - 1), minlength=CONF_BINS)
    cdf = np.cumsum(hist) / max(1, n)
    quantiles = {
        str(q): round(float(np.searchsorted(cdf, q) + 0.5) / CONF_BINS, 4) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
    }
    order = [i for i in np.argsort(-counts[:-1], kind="stable")[:top] if counts[i]]
    return {
        "kind": kind,
        "label_counts": {categories[i]: int(counts[i]) for i in order},  # the ``top`` most frequent
        "other": int(counts[:-1].sum() - counts[order].sum()),
        "unknown": int(counts[-1]),
        "confidence_quantiles": quantiles,
    }
