"""Page pieces from numbers: progress bar, result summary, plot frames, confusion heat map, download links."""

from __future__ import annotations

import html
import urllib.parse
from typing import Any

import pandas as pd

from serve.results import FieldSummary, ResultSummary

FILES_ROUTE = "/files"


def duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``12 s``; blank when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def message(text: str, kind: str = "info") -> str:
    """A status line for the page: ``info``, ``ok`` or ``error`` (styled by the app's CSS)."""
    return f'<div class="rm-msg rm-{kind}">{html.escape(text)}</div>'


def progress_html(status: str, phase: str, done: int, total: int, rate: float | None, eta: float | None) -> str:
    """A progress bar with rows done / total, rows per second and time left."""
    pct = 100.0 * done / total if total else 0.0
    bits = [f"<b>{html.escape(status)}</b>"]
    if phase:
        bits.append(html.escape(phase))
    if total:
        bits.append(f"{done:,} / {total:,} rows ({pct:.0f} %)")
    if rate:
        bits.append(f"{rate:,.0f} rows/s")
    if eta is not None and status == "RUNNING":
        bits.append(f"ETA {duration(eta) or '0 s'}")
    return (
        f'<div class="rm-progress"><div class="rm-bar"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="rm-progress-text">{" · ".join(bits)}</div></div>'
    )


def summary_markdown(summary: ResultSummary) -> str:
    """Key numbers of the mapping and each field's accuracy against the query's own labels."""
    a = summary.attrs
    lines = [
        f"**{a.get('n_query') or 0:,} query rows** mapped onto **{a.get('n_reference') or 0:,} reference rows**",
        f"k = {a.get('k')}, kernel `{a.get('kernel')}`, index `{a.get('index_factory')}`"
        + (f", nprobe {a['nprobe']}" if a.get("nprobe") else "")
        + (f", recall@k {a['index_recall']:.3f}" if isinstance(a.get("index_recall"), float) else "")
        + (f" · {duration(a.get('seconds'))}" if a.get("seconds") else ""),
    ]
    for name, field in summary.fields.items():
        if field.accuracy is not None:
            lines.append(f"`{name}`: {100 * field.accuracy:.1f} % of predictions match the query's own labels")
    return "\n\n".join(lines)


def counts_frame(field: FieldSummary) -> pd.DataFrame:
    return pd.DataFrame({"label": list(field.counts), "rows": list(field.counts.values())})


def hist_frame(field: FieldSummary) -> pd.DataFrame:
    """Bins as centre values so the bar plot keeps their order."""
    lo, hi = field.value_range
    n = len(field.hist)
    width = (hi - lo) / max(n, 1)
    centres = [round(lo + (i + 0.5) * width, 4) for i in range(n)]
    return pd.DataFrame({"value": centres, "rows": field.hist})


def confusion_html(confusion: dict[str, dict[str, int]] | None) -> str:
    """A heat map table, rows = the query's labels, columns = predictions, shaded by row share."""
    if not confusion:
        return message("No confusion matrix: the query has no column with the same name as this field.")
    preds = sorted({p for row in confusion.values() for p in row})
    head = "".join(f'<th class="rm-rot"><span>{html.escape(p)}</span></th>' for p in preds)
    rows = []
    for true in sorted(confusion):
        row = confusion[true]
        total = sum(row.values()) or 1
        cells = []
        for p in preds:
            n = row.get(p, 0)
            share = n / total
            style = f"background: rgba({'34,139,84' if p == true else '220,80,60'},{share:.2f})"
            cells.append(f'<td style="{style}" title="{html.escape(true)} → {html.escape(p)}: {n:,}">{n or ""}</td>')
        rows.append(f"<tr><th>{html.escape(true)}</th>{''.join(cells)}</tr>")
    return (
        '<div class="rm-confusion"><table><caption>Confusion: rows are the query\'s own labels, columns the '
        "predictions; green = agreement, red = confusion, shaded by share of the row.</caption>"
        "<thead><tr><th>true ↓ / predicted →</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def file_link(path: str, label: str | None = None) -> str:
    """A download link through the app's guarded file route."""
    query = urllib.parse.urlencode({"path": path})
    return f'<a href="{FILES_ROUTE}?{query}" download>{html.escape(label or path.rsplit("/", 1)[-1])}</a>'


def downloads_html(paths: dict[str, str | None]) -> str:
    links = [f"<li>{file_link(p, label)}</li>" for label, p in paths.items() if p]
    return f'<ul class="rm-downloads">{"".join(links)}</ul>' if links else ""


def jobs_frame(jobs: list[dict[str, Any]]) -> pd.DataFrame:
    """The Jobs tab's table: newest first."""
    columns = ["job", "status", "submitted", "duration", "query", "reference", "parameters", "output"]
    return pd.DataFrame(jobs, columns=columns) if jobs else pd.DataFrame(columns=columns)
