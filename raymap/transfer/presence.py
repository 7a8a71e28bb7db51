"""Presence scores (CellMapper / HNOCA-tools): how strongly each reference row is reached by the query.

Raw score of reference row j = column sum of the query->reference gauss connectivities
``exp(-d² / 2σ²)`` (σ = mean of all neighbour distances, no row normalisation), accumulated
chunk by chunk. Post-processing follows CellMapper's ``process_presence_scores``: optional
log1p, clipping to the given percentiles, min-max scaling. Percentiles are exact: the
per-reference vector (8 bytes a row: 0.8 GB at 1e8 rows) is held in memory for them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from raymap._parse import format_bytes, parse_bytes
from raymap.kernels import KERNELS, kernel_values, merge_stats, unit_stats
from raymap.store import MappingStore
from raymap.transfer.fields import encode_labels

log = logging.getLogger(__name__)
FIELD = "presence_score"


def process_scores(scores: np.ndarray, log1p: bool, percentile: tuple[float, float], minmax: bool) -> np.ndarray:
    """CellMapper's post-processing, per column of ``scores`` (n_reference,) or (n_reference, groups)."""
    out = np.log1p(scores) if log1p else np.array(scores, dtype=np.float64)
    if tuple(percentile) != (0, 100):
        low, high = np.percentile(out, percentile, axis=0)
        out = np.clip(out, low, high)
    if minmax:
        lo, hi = out.min(axis=0), out.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        out = np.where(hi > lo, (out - lo) / span, 0.0)
    return out


def _sigma(store: MappingStore) -> float:
    """Mean of all finite neighbour distances: from the mapping's attrs, or one streamed pass."""
    if "distance_mean" in store.attrs:
        return float(store.attrs["distance_mean"])
    stats = merge_stats(unit_stats(store.neighbors(s, e)[1]) for s, e in store.units())
    return stats[1]


def presence_scores(
    store: MappingStore,
    groupby: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    log1p: bool = False,
    percentile: tuple[float, float] = (1, 99),
    minmax: bool = True,
    memory_budget: int | str = "1GiB",
) -> dict[str, Any]:
    """Write ``transfer/presence_score/`` and return the per-reference-label summary.

    Parameters
    ----------
    groupby
        Query labels (one per query row): also score each group separately, as CellMapper's
        ``groupby`` (a dense ``(n_reference, groups)`` accumulator: it must fit ``memory_budget``).
    reference_labels
        Reference labels (one per reference row): the mean processed score of each label, so
        populations the query never reaches stand out.
    """
    store.require_complete()
    n_ref = store.n_reference
    lo, hi = percentile
    if not 0 <= lo <= hi <= 100:
        raise ValueError(f"percentile: expected 0 <= low <= high <= 100, got {percentile!r}")
    groups: np.ndarray | None = None
    group_names: list[str] = []
    if groupby is not None:
        groups, group_names = encode_labels(np.asarray(groupby), "groupby")
        if len(groups) != store.n_query:
            raise ValueError(f"presence: groupby has {len(groups)} labels, the query has {store.n_query} rows")
        need = n_ref * len(group_names) * 8
        if need > parse_bytes(memory_budget):
            raise ValueError(
                f"presence: per-group scores need {format_bytes(need)} ({n_ref} x {len(group_names)} groups), "
                f"more than memory_budget={memory_budget}"
            )
    ref_codes, ref_names = (None, []) if reference_labels is None else encode_labels(reference_labels, "reference")
    if ref_codes is not None and len(ref_codes) != n_ref:
        raise ValueError(f"presence: reference_labels has {len(ref_codes)} rows, the reference has {n_ref}")
    sigma = _sigma(store)
    raw = np.zeros(n_ref)
    per_group = None if groups is None else np.zeros(n_ref * len(group_names))
    for start, stop in store.units():
        ids, distances = store.neighbors(start, stop)
        w = kernel_values(KERNELS["gauss"], distances, sigma)
        ids = ids.astype(np.int64)
        raw += np.bincount(ids.ravel(), w.ravel(), minlength=n_ref)
        if per_group is not None and groups is not None:
            cells = (ids * len(group_names) + groups[start:stop, None]).ravel()
            uniq, inverse = np.unique(cells, return_inverse=True)
            per_group[uniq] += np.bincount(inverse, w.ravel())
    score = process_scores(raw, log1p, percentile, minmax)
    group = store.group.require_group(f"transfer/{FIELD}")
    group.attrs.clear()
    chunks = (min(n_ref, 1 << 20),)
    for name, values in (("raw", raw), ("score", score)):
        group.create_array(name, shape=(n_ref,), chunks=chunks, dtype=np.float64, overwrite=True)[:] = values
    if per_group is not None:
        table = process_scores(per_group.reshape(n_ref, -1), log1p, percentile, minmax)
        arr = group.create_array(
            "groups", shape=table.shape, chunks=(chunks[0], table.shape[1]), dtype=np.float64, overwrite=True
        )
        arr[:] = table
    summary = {}
    if ref_codes is not None:
        means = np.bincount(ref_codes, score, minlength=len(ref_names)) / np.bincount(
            ref_codes, minlength=len(ref_names)
        )
        summary = dict(zip(ref_names, np.round(means, 6).tolist(), strict=True))
    group.attrs.update(
        {
            "kind": "presence",
            "sigma": sigma,
            "log1p": log1p,
            "percentile": list(percentile),
            "minmax": minmax,
            "groups": group_names,
            "by_reference_label": summary,
            "complete": True,
        }
    )
    log.info("presence scores for %d reference rows (σ=%.4g)", n_ref, sigma)
    return summary
