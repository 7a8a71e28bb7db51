"""Numbers the Map tab shows for a finished job, computed chunk by chunk in a Ray task, not in the UI replica."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

log = logging.getLogger(__name__)
HIST_BINS = 20
TOP_LABELS = 25  # bars and confusion rows/columns shown; the rest are summed into "other"
CHUNK_ROWS = 262_144
OTHER = "(other)"


@dataclass(slots=True)
class FieldSummary:
    """One transferred field.

    Attributes
    ----------
    kind
        ``categorical`` or ``numeric``.
    counts
        Predicted label -> rows, most frequent first (categorical).
    hist
        Rows per confidence bin over [0, 1] in :data:`HIST_BINS` bins (categorical), or per value
        bin over ``value_range`` (numeric).
    value_range
        ``(min, max)`` of a numeric field's predicted values; ``(0, 1)`` for confidences.
    confusion
        True label -> predicted label -> rows, when the query carries a column of the same name.
    accuracy
        Share of rows whose prediction equals the query's own label (over all rows).
    """

    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    hist: list[int] = field(default_factory=list)
    value_range: tuple[float, float] = (0.0, 1.0)
    confusion: dict[str, dict[str, int]] | None = None
    accuracy: float | None = None


@dataclass(slots=True)
class ResultSummary:
    """What :func:`summarize` returns: small, picklable, independent of the query size."""

    attrs: dict[str, Any]
    fields: dict[str, FieldSummary]
    predictions_csv: str | None


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> np.ndarray:
    """Counts in ``bins`` equal bins over ``[lo, hi]`` (values at ``hi`` land in the last bin)."""
    if hi <= lo:
        hi = lo + 1.0
    idx = np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins)


def top_with_other(counts: dict[str, int], top: int = TOP_LABELS) -> dict[str, int]:
    """The ``top`` largest entries, the rest summed under :data:`OTHER`."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(ordered[:top])
    rest = sum(v for _, v in ordered[top:])
    if rest:
        out[OTHER] = rest
    return out


def confusion_table(pairs: dict[tuple[str, str], int], top: int = TOP_LABELS) -> dict[str, dict[str, int]]:
    """Nested ``{true: {pred: n}}`` limited to the most frequent true and predicted labels."""
    true_tot: dict[str, int] = {}
    pred_tot: dict[str, int] = {}
    for (t, p), n in pairs.items():
        true_tot[t] = true_tot.get(t, 0) + n
        pred_tot[p] = pred_tot.get(p, 0) + n
    keep_t = set(top_with_other(true_tot, top)) - {OTHER}
    keep_p = set(top_with_other(pred_tot, top)) - {OTHER}
    table: dict[str, dict[str, int]] = {}
    for (t, p), n in pairs.items():
        row = table.setdefault(t if t in keep_t else OTHER, {})
        col = p if p in keep_p else OTHER
        row[col] = row.get(col, 0) + n
    return table


def summarize(
    result_path: str, query_path: str | None, fields: dict[str, str], write_csv: bool = True
) -> ResultSummary:
    """Stream over a mapping store's transferred fields; optionally write ``<store>.predictions.csv``.

    ``fields`` maps transferred field -> kind. A query metadata column with the same name as a
    categorical field gives the confusion matrix and accuracy (read once: one label per row).
    """
    from raymap import MappingResult
    from raymap.sources import open_source

    result = MappingResult(result_path)
    n = result.shape[0]
    truth: dict[str, np.ndarray] = {}
    if query_path:
        query = open_source(query_path)
        for name, kind in fields.items():
            if kind == "categorical" and name in query.metadata_columns():
                truth[name] = np.asarray(query.read_column(name)).astype(str)
    summaries = {name: FieldSummary(kind) for name, kind in fields.items()}
    for name, kind in fields.items():
        if kind == "numeric":
            summaries[name].value_range = _value_range(result, name, n)
    hists = {name: np.zeros(HIST_BINS, np.int64) for name in fields}
    pairs: dict[str, dict[tuple[str, str], int]] = {name: {} for name in truth}
    correct = dict.fromkeys(truth, 0)
    csv_path = f"{result_path.rstrip('/')}.predictions.csv" if write_csv else None
    writer = None
    try:
        for start in range(0, n, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, n)
            columns: dict[str, Any] = {"row": np.arange(start, stop)}
            for name, summary in summaries.items():
                if summary.kind == "categorical":
                    labels = result.labels(name, start, stop).astype(str)
                    conf = result.confidence(name, start, stop)
                    _count(summary.counts, labels)
                    hists[name] += histogram(conf, 0.0, 1.0)
                    columns[f"{name}_pred"], columns[f"{name}_conf"] = labels, conf
                    if name in truth:
                        true = truth[name][start:stop]
                        correct[name] += int((true == labels).sum())
                        _count_pairs(pairs[name], true, labels)
                        columns[name] = true
                else:
                    values = result.values(name, start, stop)
                    hists[name] += histogram(values, *summary.value_range)
                    columns[f"{name}_pred"] = values
            if csv_path:
                table = pa.table(columns)
                writer = writer or pacsv.CSVWriter(csv_path, table.schema)
                writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    for name, summary in summaries.items():
        summary.counts = top_with_other(summary.counts)
        summary.hist = hists[name].tolist()
        if name in truth:
            summary.confusion = confusion_table(pairs[name])
            summary.accuracy = correct[name] / max(n, 1)
    log.info("summarized %s: %d rows, fields %s", result_path, n, list(fields))
    return ResultSummary(dict(result.summary()), summaries, csv_path)


def _value_range(result: Any, name: str, n: int) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for start in range(0, n, CHUNK_ROWS):
        values = result.values(name, start, min(start + CHUNK_ROWS, n))
        lo, hi = min(lo, float(np.nanmin(values))), max(hi, float(np.nanmax(values)))
    return (lo, hi) if np.isfinite(lo) else (0.0, 1.0)


def _count(counts: dict[str, int], labels: np.ndarray) -> None:
    uniq, n = np.unique(labels, return_counts=True)
    for label, c in zip(uniq.tolist(), n.tolist(), strict=True):
        counts[label] = counts.get(label, 0) + c


def _count_pairs(pairs: dict[tuple[str, str], int], true: np.ndarray, pred: np.ndarray) -> None:
    both = np.char.add(np.char.add(true, "\x1f"), pred)
    uniq, n = np.unique(both, return_counts=True)
    for key, c in zip(uniq.tolist(), n.tolist(), strict=True):
        t, p = key.split("\x1f", 1)
        pairs[(t, p)] = pairs.get((t, p), 0) + c


def summarize_remote(result_path: str, query_path: str | None, fields: dict[str, str]) -> Any:
    """Start :func:`summarize` as a Ray task (half a CPU): the UI replica only awaits the small result."""
    import ray

    task = ray.remote(num_cpus=0.5)(summarize)
    return task.remote(result_path, query_path, fields)
