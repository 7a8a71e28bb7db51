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


SAMPLE_MIN, SAMPLE_MAX = 100, 2_000_000
CLUSTER_K_MAX = 200
MAX_FILTER_VALUES = 200
PROJECTIONS = ("pca", "umap", "tsne")
CLUSTER_BACKENDS = ("auto", "faiss", "faiss-gpu", "cuml", "sklearn")
EXPORT_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True, slots=True)
class ExploreRequest:
    """A checked exploration: a dataset inside the roots, a filter on known values, sizes in range."""

    dataset: Path
    filter: dict[str, list[Any]]
    sample: int
    cluster_k: int | None  # None: no clustering
    cluster_backend: str
    projection: str
    images: Path | None  # HDF5 thumbnails keyed by uuid (fallback when an identifier fails)


def parse_filter(filters: Any, known: dict[str, list[Any] | None]) -> dict[str, list[Any]]:
    """``{column: [values]}`` whose columns are filterable and whose values occur in the data."""
    if not isinstance(filters, dict):
        raise ValueError(f"filter: expected {{column: [values]}}, got {type(filters).__name__}")
    out: dict[str, list[Any]] = {}
    for column, values in filters.items():
        if column not in known or known[column] is None:
            filterable = sorted(c for c, v in known.items() if v is not None)
            raise ValueError(f"filter: column {column!r} cannot be filtered; choose from {filterable}")
        chosen = list(values) if isinstance(values, list | tuple) else [values]
        if not chosen or len(chosen) > MAX_FILTER_VALUES:
            raise ValueError(f"filter on {column!r}: choose 1 to {MAX_FILTER_VALUES} values, got {len(chosen)}")
        allowed = set(known[column] or [])
        unknown = [v for v in chosen if v not in allowed]
        if unknown:
            raise ValueError(f"filter on {column!r}: values {unknown[:5]} do not occur in the data")
        out[column] = chosen
    return out


def parse_explore_request(
    roots: DataRoots,
    dataset: Any,
    filters: Any,
    sample: Any,
    cluster_k: Any,
    cluster_backend: Any,
    projection: Any,
    images: Any,
    known: dict[str, list[Any] | None],
) -> ExploreRequest:
    """Check one exploration from the page (or a direct API call); ``known`` = filterable values per column."""
    k = parse_int(cluster_k if cluster_k not in (None, "") else 0, "clusters", 0, CLUSTER_K_MAX)
    if k == 1:
        raise ValueError("clusters: use 0 for no clustering or at least 2 clusters")
    return ExploreRequest(
        dataset=roots.resolve(dataset, what="dataset"),
        filter=parse_filter(filters or {}, known),
        sample=parse_int(sample, "sample size", SAMPLE_MIN, SAMPLE_MAX),
        cluster_k=k or None,
        cluster_backend=parse_choice(cluster_backend, CLUSTER_BACKENDS, "clustering backend"),
        projection=parse_choice(projection, PROJECTIONS, "projection"),
        images=roots.resolve(images, what="image store") if images else None,
    )


def parse_export(roots: DataRoots, value: Any) -> Path:
    """A new ``.parquet``/``.csv`` file under a data root for a selection export."""
    if not isinstance(value, str) or not value.strip().lower().endswith(EXPORT_SUFFIXES):
        raise ValueError(f"export: expected a new file name ending in {' or '.join(EXPORT_SUFFIXES)}, got {value!r}")
    out = roots.resolve(value, must_exist=False, what="export")
    if out.exists():
        raise ValueError(f"export {value!r} exists already; choose a new name")
    return out
