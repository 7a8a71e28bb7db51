"""MappingResult: a lazy handle on a mapping store, with the transferred fields read back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from raymap.store import MappingStore


class MappingResult:
    """What ``raymap.map`` returns: nothing is loaded until asked; the store is the source of truth."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.store = MappingStore(path, mode="r+")

    @property
    def path(self) -> str:
        return self.store.path

    @property
    def attrs(self) -> dict[str, Any]:
        return self.store.attrs

    @property
    def shape(self) -> tuple[int, int]:
        return self.store.n_query, self.store.n_reference

    def neighbors(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, distances)`` for query rows ``[start, stop)``."""
        return self.store.neighbors(start, stop)

    def iter_csr(self, chunk_rows: int | None = None) -> Iterator[tuple[int, sp.csr_matrix]]:
        return self.store.iter_csr(chunk_rows)

    def to_scipy(self) -> sp.csr_matrix:
        return self.store.to_scipy()

    def transfer(self, spec: dict[str, Any], reference: Any = None, threshold: float = 0.0) -> MappingResult:
        """Transfer fields from the reference (a path/source with metadata, or ``(kind, array)`` values)."""
        from raymap.sources import open_source
        from raymap.transfer import run_transfer

        ref = None if reference is None else open_source(reference)
        if ref is None and any(isinstance(v, str) for v in spec.values()):
            ref = _reference_from_attrs(self.store)
        run_transfer(self.store, spec, ref, threshold)
        return self

    def fields(self) -> list[str]:
        """Names of transferred fields."""
        if "transfer" not in self.store.group:
            return []
        return sorted(self.store.group.require_group("transfer").group_keys())

    def _field(self, name: str) -> Any:
        if name not in self.fields():
            raise KeyError(f"{self.path}: no transferred field {name!r}; have {self.fields()}")
        return self.store.group[f"transfer/{name}"]

    def labels(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Predicted labels as strings (``"unknown"`` where no reference neighbour carries weight)."""
        group = self._field(name)
        categories = np.array([*group.attrs["categories"], "unknown"], dtype=object)
        return categories[group["labels"][start:stop]]

    def confidence(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self._field(name)["confidence"][start:stop])

    def values(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self._field(name)["values"][start:stop])

    def summary(self) -> dict[str, Any]:
        """Small numbers for people: sizes, index quality, time, per-field label counts."""
        a = self.attrs
        out: dict[str, Any] = {
            k: a.get(k)
            for k in (
                "n_query",
                "n_reference",
                "k",
                "kernel",
                "index_factory",
                "nprobe",
                "index_recall",
                "empty_rows",
                "seconds",
            )
        }
        for name in self.fields():
            group = self._field(name)
            if group.attrs.get("kind") == "categorical":
                labels = self.labels(name)
                uniq, counts = np.unique(labels, return_counts=True)
                conf = self.confidence(name)
                out[name] = {
                    "top_labels": dict(
                        sorted(zip(uniq.tolist(), counts.tolist(), strict=True), key=lambda t: -t[1])[:5]
                    ),
                    "confidence_quantiles": np.quantile(conf, [0.1, 0.5, 0.9]).round(3).tolist(),
                }
        return out

    def __repr__(self) -> str:
        return f"MappingResult({self.path!r}, shape={self.shape}, k={self.store.k})"


def _reference_from_attrs(store: MappingStore) -> Any:
    """Re-open the reference recorded at mapping time (a path) to read its metadata columns."""
    from raymap.sources import open_source

    described = str(store.attrs.get("reference", ""))
    path = described.split(" [")[0].split(":obsm[")[0]
    if not os.path.exists(path):
        raise ValueError(
            f"{store.path}: pass reference= to transfer; the recorded reference {described!r} is not a readable path"
        )
    return open_source(path)
