"""Seeded, streamed row samples (uniform or capped per stratum) and gathering their embeddings batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymap.sources import EmbeddingSource, plan_batches

# Dense uniform samples are planned over fixed blocks of row ids, so a seed gives the same
# rows whatever batch size later reads them.
PLAN_BLOCK = 65_536
DENSE_RATIO = 50  # numpy's choice() is O(size) only while size <= n / 50
HYPERGEOMETRIC_MAX = 10**9  # numpy's multivariate_hypergeometric limit on the population


def _check_size(size: int, name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {size!r}")


def uniform_rows(n_rows: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` sorted row ids drawn uniformly without replacement from ``[0, n_rows)``.

    Memory stays O(size): a sparse sample (``size <= n_rows / 50``) uses numpy's set-based
    draw; a dense one plans the count per fixed block of row ids with one multivariate
    hypergeometric draw, then picks rows block by block. All rows when ``size >= n_rows``.
    """
    _check_size(size, "sample size")
    if size >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if size * DENSE_RATIO <= n_rows:
        return np.sort(rng.choice(n_rows, size=size, replace=False)).astype(np.int64)
    if n_rows >= HYPERGEOMETRIC_MAX:
        raise ValueError(
            f"a sample of {size} from {n_rows} rows is too dense to plan; sample at most {n_rows // DENSE_RATIO} rows"
        )
    blocks = plan_batches(n_rows, PLAN_BLOCK)
    counts = rng.multivariate_hypergeometric(np.array([e - s for s, e in blocks], dtype=np.int64), size)
    parts = [
        np.sort(rng.choice(e - s, size=c, replace=False)) + s for (s, e), c in zip(blocks, counts, strict=True) if c
    ]
    return np.concatenate(parts).astype(np.int64)


def stratified_rows(
    column_batches: Callable[[], Iterable[tuple[int, pa.Array | pa.ChunkedArray]]], cap: int, seed: int = 0
) -> np.ndarray:
    """Sorted row ids with at most ``cap`` rows per value of a column (all rows of rarer values).

    Two streamed passes over ``column_batches()`` (``(row_start, values)`` in row order): the
    first counts rows per value, the second keeps the rows whose rank within their value was
    drawn. Memory is O(values x cap + one batch). Nulls form their own stratum.
    """
    _check_size(cap, "cap per stratum")
    counts: dict[object, int] = {}
    value_type = pa.null()
    for _, values in column_batches():
        value_type = values.type
        for item in pc.value_counts(values).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    keys = [k for k in counts if k is not None]
    value_set = pa.array(keys, type=value_type) if keys else None
    null_code = len(keys)
    totals = np.array([counts[k] for k in keys] + [counts.get(None, 0)], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(t, size=cap, replace=False)) if t > cap else None for t in totals]
    seen = np.zeros(len(totals), dtype=np.int64)
    out = []
    for start, values in column_batches():
        if value_set is None:
            codes = np.full(len(values), null_code, dtype=np.int64)
        else:
            codes = pc.fill_null(pc.index_in(values, value_set=value_set), null_code).to_numpy().astype(np.int64)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        group_start = np.searchsorted(sorted_codes, sorted_codes, side="left")
        rank = np.empty_like(codes)
        rank[order] = np.arange(len(codes)) - group_start + seen[sorted_codes]
        keep = np.ones(len(codes), dtype=bool)
        for code in np.unique(codes):
            if chosen[code] is not None:
                mask = codes == code
                keep[mask] = np.isin(rank[mask], chosen[code])
        seen += np.bincount(codes, minlength=len(totals))
        out.append(np.flatnonzero(keep) + start)
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, np.int64)


def iter_rows(source: EmbeddingSource, rows: np.ndarray, batch_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """Embeddings of sorted ``rows``, as ``(offset into rows, block)``, reading one source batch at a time.

    Source batches holding none of ``rows`` are skipped; consecutive rows read as one range.
    """
    if len(rows) and (rows[0] < 0 or rows[-1] >= source.n_rows):
        raise IndexError(f"{source.describe()}: row ids outside [0, {source.n_rows})")
    for start, stop in plan_batches(source.n_rows, batch_rows):
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi == lo:
            continue
        first, last = int(rows[lo]), int(rows[hi - 1])
        block = source.read(first, last + 1)
        yield int(lo), block if hi - lo == last + 1 - first else block[rows[lo:hi] - first]


def gather(source: EmbeddingSource, rows: np.ndarray, batch_rows: int) -> np.ndarray:
    """Embeddings of sorted ``rows`` as one ``(len(rows), dim)`` float32 array (for a bounded sample)."""
    out = np.empty((len(rows), source.dim), dtype=np.float32)
    for offset, block in iter_rows(source, rows, batch_rows):
        out[offset : offset + len(block)] = block
    return out
