"""The one progress line format jobs print and :meth:`raymap.client.Client.progress` parses."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

PREFIX = "raymap-progress"
FIELDS = ("phase", "done", "total", "rows_per_s", "eta_s")


def format_progress(phase: str, done: int, total: int, rows_per_s: float, eta_s: float | None) -> str:
    """``raymap-progress phase=search done=4096 total=20000 rows_per_s=1234.5 eta_s=12.9``."""
    eta = "nan" if eta_s is None else f"{eta_s:.1f}"
    return f"{PREFIX} phase={phase} done={done} total={total} rows_per_s={rows_per_s:.1f} eta_s={eta}"


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """One line -> ``{phase, done, total, rows_per_s, eta_s, fraction}``; None if it is not a progress line."""
    if not line.startswith(PREFIX + " "):
        return None
    fields = dict(part.partition("=")[::2] for part in line[len(PREFIX) + 1 :].split())
    if set(FIELDS) - fields.keys():
        return None
    try:
        done, total = int(fields["done"]), int(fields["total"])
        rate, eta = float(fields["rows_per_s"]), float(fields["eta_s"])
    except ValueError:
        return None
    return {
        "phase": fields["phase"],
        "done": done,
        "total": total,
        "fraction": done / total if total else 1.0,
        "rows_per_s": rate,
        "eta_s": None if math.isnan(eta) else eta,
    }


def parse_progress(logs: str) -> dict[str, Any]:
    """The latest progress line of a job's logs, plus the latest per phase under ``phases``; {} when none yet."""
    phases: dict[str, dict[str, Any]] = {}
    latest: dict[str, Any] = {}
    for line in logs.splitlines():
        parsed = parse_progress_line(line.strip())
        if parsed:
            phases[parsed["phase"]] = latest = parsed
    return {**latest, "phases": phases} if latest else {}


class ProgressPrinter:
    """The ``progress(phase, done, total)`` callback of :func:`raymap.map` for jobs: prints throttled lines.

    Rates are measured from the first call of each phase, so a resumed job reports only its own speed.
    A line is printed at most every ``every_s`` seconds per phase, and always at a phase's end.
    """

    def __init__(self, every_s: float = 1.0, stream: TextIO | None = None) -> None:
        self.every_s = every_s
        self.stream = stream or sys.stdout
        self._start: dict[str, tuple[float, int]] = {}
        self._last: dict[str, float] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        t0, done0 = self._start.setdefault(phase, (now, done))
        if done < total and now - self._last.get(phase, -math.inf) < self.every_s:
            return
        self._last[phase] = now
        elapsed = now - t0
        rate = (done - done0) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else (0.0 if done >= total else None)
        print(format_progress(phase, done, total, rate, eta), file=self.stream, flush=True)
