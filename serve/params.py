"""Checks of what the page sends: each ``parse_*`` names the field, the allowed values and what it got."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymap._parse import parse_choice
from raymap.kernels import KERNELS
from serve.paths import DataRoots

K_MAX = 1_000
OUT_SUFFIX = ".zarr"
_FACTORY = re.compile(r"[A-Za-z0-9_,.]{1,64}")


def parse_int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer in ``[lo, hi]`` from a number or text (the page's Number fields send floats)."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{name}: expected a whole number in [{lo}, {hi}], got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(f"{name}: expected a whole number in [{lo}, {hi}], got {value!r}")
    if number != int(number) or not lo <= number <= hi:
        raise ValueError(f"{name}: expected a whole number in [{lo}, {hi}], got {value!r}")
    return int(number)


def parse_factory(value: Any) -> str:
    """``auto`` or a faiss factory string of plain characters (checked against the data in the job)."""
    if not isinstance(value, str) or not _FACTORY.fullmatch(value.strip()):
        raise ValueError(f"index: expected 'auto' or a faiss factory string such as 'IVF1024,Flat', got {value!r}")
    return value.strip()


def parse_out(roots: DataRoots, value: Any) -> Path:
    """A new ``.zarr`` store under a data root; an existing path is refused (no silent overwrite)."""
    if not isinstance(value, str) or not value.strip().endswith(OUT_SUFFIX):
        raise ValueError(f"output: expected a new store name ending in {OUT_SUFFIX}, got {value!r}")
    out = roots.resolve(value, must_exist=False, what="output")
    if out.exists():
        raise ValueError(f"output {value!r} exists already; choose a new name")
    return out


@dataclass(frozen=True, slots=True)
class MapRequest:
    """A checked mapping submission: real paths inside the data roots and parameters in range."""

    query: Path
    reference: Path
    out: Path
    k: int
    kernel: str
    index: str
    transfer: dict[str, str] = field(default_factory=dict)

    def map_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``raymap.map`` beyond query, reference and out."""
        return {"k": self.k, "kernel": self.kernel, "index": self.index, "transfer": dict(self.transfer)}


def parse_map_request(
    roots: DataRoots,
    query: Any,
    reference: Any,
    out: Any,
    labels: Any,
    k: Any,
    kernel: Any,
    index: Any,
    column_kinds: dict[str, str],
) -> MapRequest:
    """Check one submission from the page (or a direct API call) before a job is started.

    ``column_kinds`` maps the reference's metadata columns to ``categorical``/``numeric``;
    every requested label column must be one of them.
    """
    q = roots.resolve(query, what="query")
    r = roots.resolve(reference, what="reference")
    o = parse_out(roots, out)
    chosen = [labels] if isinstance(labels, str) else list(labels or [])
    unknown = [c for c in chosen if c not in column_kinds]
    if unknown:
        raise ValueError(f"label columns {unknown} are not in the reference; columns: {sorted(column_kinds)}")
    return MapRequest(
        query=q,
        reference=r,
        out=o,
        k=parse_int(k, "k", 1, K_MAX),
        kernel=parse_choice(kernel, tuple(KERNELS), "kernel"),
        index=parse_factory(index),
        transfer={c: column_kinds[c] for c in chosen},
    )

