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

    def transfer(
        self,
        spec: dict[str, Any],
        reference: Any = None,
        threshold: float = 0.0,
        *,
        t: int = 1,
        symmetrize: str | None = None,
        graph: str | None = None,
        memory_budget: int | str = "1GiB",
    ) -> MappingResult:
        """Transfer fields from the reference (a path/source with metadata, or ``(kind, data)`` values).

        All fields share each streamed pass; see :func:`raymap.transfer.run_transfer` for ``t``
        (diffusion, self-mapping), ``symmetrize`` (``max``/``mean``/``union``) and ``graph``.
        """
        from raymap.transfer import run_transfer

        ref = self._reference(reference) if any(isinstance(v, str) for v in spec.values()) else None
        run_transfer(
            self.store,
            spec,
            ref,
            threshold,
            t=t,
            symmetrize_method=symmetrize,
            graph=graph,
            memory_budget=memory_budget,
        )
        return self

    def presence(
        self,
        groupby: str | np.ndarray | None = None,
        reference_labels: str | np.ndarray | None = None,
        reference: Any = None,
        *,
        log1p: bool = False,
        percentile: tuple[float, float] = (1, 99),
        minmax: bool = True,
        memory_budget: int | str = "1GiB",
    ) -> dict[str, float]:
        """Presence scores of the reference rows (CellMapper's definition); returns the mean per reference label.

        ``groupby``: query labels, or the name of a transferred categorical field (predicted labels).
        ``reference_labels``: reference labels, or a column of the reference's metadata.
        """
        from raymap.transfer import presence_scores

        groups = self.labels(groupby) if isinstance(groupby, str) else groupby
        ref_labels = (
            self._reference(reference).read_column(reference_labels)
            if isinstance(reference_labels, str)
            else reference_labels
        )
        return presence_scores(
            self.store,
            groups,
            ref_labels,
            log1p=log1p,
            percentile=percentile,
            minmax=minmax,
            memory_budget=memory_budget,
        )

    def _reference(self, reference: Any) -> Any:
        from raymap.sources import open_source

        return _reference_from_attrs(self.store) if reference is None else open_source(reference)

    def fields(self) -> list[str]:
        """Names of finished transferred fields (and ``presence_score`` once computed)."""
        if "transfer" not in self.store.group:
            return []
        transfer: Any = self.store.group["transfer"]
        return sorted(k for k in transfer.group_keys() if not k.startswith("_") and transfer[k].attrs.get("complete"))

    def query_fields(self) -> list[str]:
        """Fields with one result per query row (categorical and numeric)."""
        return [n for n in self.fields() if self.field_kind(n) in ("categorical", "numeric")]

    def field(self, name: str) -> Any:
        """The zarr group of a finished field."""
        if name not in self.fields():
            if f"transfer/{name}" in self.store.group:
                raise RuntimeError(f"{self.path}: field {name!r} was not finished; run the transfer again")
            raise KeyError(f"{self.path}: no transferred field {name!r}; have {self.fields()}")
        return self.store.group[f"transfer/{name}"]

    def field_kind(self, name: str) -> str:
        return str(self.field(name).attrs["kind"])

    def labels(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Predicted labels as strings (``"unknown"`` where no reference neighbour carries weight)."""
        group = self.field(name)
        categories = np.array([*group.attrs["categories"], "unknown"], dtype=object)
        return categories[group["labels"][start:stop]]

    def confidence(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self.field(name)["confidence"][start:stop])

    def values(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self.field(name)["values"][start:stop])

    def presence_score(self, groups: bool = False) -> Any:
        """Processed presence score per reference row, or (``groups=True``) a DataFrame per query group."""
        from raymap.transfer.export import presence_frame
        from raymap.transfer.presence import FIELD

        return presence_frame(self) if groups else np.asarray(self.field(FIELD)["score"][:])

    def to_pandas(self, fields: list[str] | None = None, start: int = 0, stop: int | None = None) -> Any:
        """Query rows ``[start, stop)`` as a DataFrame with ``<key>_pred`` / ``<key>_conf`` columns."""
        from raymap.transfer.export import frame

        return frame(self, fields, start, stop)

    def to_anndata(
        self,
        query: Any = None,
        reference: Any = None,
        fields: list[str] | None = None,
        layers: tuple[str, ...] = (),
        max_bytes: int | str = "2GiB",
    ) -> None:
        """Write results into AnnData objects as CellMapper does (obs/obsm/layers; presence into the reference)."""
        from raymap.transfer.export import write_anndata

        write_anndata(self, query, reference, fields, layers, max_bytes)

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
                "operator",
                "index_factory",
                "nprobe",
                "index_recall",
                "empty_rows",
                "seconds",
            )
        }
        pool = a.get("pool") or {}
        out["actor_idle_share"] = pool.get("actor_idle_share")  # how long the burst's actors sat waiting
        from raymap.transfer.export import field_summary

        out.update({name: field_summary(self, name) for name in self.fields()})
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
