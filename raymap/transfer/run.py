"""run_transfer: every field of a spec in one streamed pass per diffusion step; results under ``transfer/<name>/``.

Categorical fields get ``labels`` (int32 codes, -1 = unknown; names in attrs) and ``confidence``
(float32); numeric ones ``values`` (float32, shape ``(n_query, *field shape)``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from raymap._parse import parse_bytes, parse_positive_int
from raymap.sources import EmbeddingSource
from raymap.store import MappingStore
from raymap.transfer.fields import Field, build_fields
from raymap.transfer.graph import operator_for
from raymap.transfer.stream import diffuse, sub_rows_for
from raymap.transfer.symmetrize import require_self_mapping, symmetrize

log = logging.getLogger(__name__)
SCRATCH = "transfer/_diffusion"


def vote(scores: np.ndarray, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Label code = argmax of the class scores, confidence = its score; empty or unsure rows -> -1.

    Ties go to the first category in sorted order (numpy's argmax).
    """
    if scores.shape[1] == 0:
        return np.full(len(scores), -1, np.int32), np.zeros(len(scores), np.float32)
    labels = scores.argmax(axis=1).astype(np.int32)
    confidence = np.minimum(scores.max(axis=1), 1.0).astype(np.float32)  # float32 row sums can pass 1 by an ulp
    labels[(confidence <= 0) | (confidence < threshold)] = -1
    return labels, confidence


class FieldOutput:
    """The zarr arrays of one field's results, written one sub-block at a time."""

    def __init__(self, store: MappingStore, field: Field, chunk_rows: int, threshold: float) -> None:
        self.field, self.threshold = field, threshold
        self.group = store.group.require_group(f"transfer/{field.name}")
        self.group.attrs.clear()  # a rerun replaces the field; "complete" comes back only at the end
        n = store.n_query
        if field.kind == "categorical":
            self.labels = self._array("labels", (n,), (chunk_rows,), np.int32, fill_value=-1)
            self.confidence = self._array("confidence", (n,), (chunk_rows,), np.float32)
        else:
            tail = field.value_shape
            self.values = self._array("values", (n, *tail), (chunk_rows, *tail), np.float32)

    def _array(self, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any, **kw: Any) -> Any:
        return self.group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, overwrite=True, **kw)

    def write(self, start: int, result: np.ndarray) -> None:
        stop = start + len(result)
        if self.field.kind == "categorical":
            self.labels[start:stop], self.confidence[start:stop] = vote(result, self.threshold)
        else:
            self.values[start:stop] = result.reshape(len(result), *self.field.value_shape).astype(np.float32)

    def finish(self, attrs: dict[str, Any]) -> None:
        extra: dict[str, Any] = {"categories": list(self.field.categories), "threshold": self.threshold}
        self.group.attrs.update(
            {**attrs, "kind": self.field.kind, **(extra if self.field.kind == "categorical" else {}), "complete": True}
        )


def parse_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold: expected a confidence in [0, 1], got {threshold!r}")
    return float(threshold)


def run_transfer(
    store: MappingStore,
    spec: dict[str, Any],
    reference: EmbeddingSource | None,
    threshold: float = 0.0,
    *,
    t: int = 1,
    symmetrize_method: str | None = None,
    graph: str | None = None,
    memory_budget: int | str = "1GiB",
) -> None:
    """Transfer every field of ``spec`` (see :func:`parse_transfer`) through ``M^t`` in shared streamed passes.

    Parameters
    ----------
    threshold
        Categorical rows whose confidence is below it get the ``unknown`` label.
    t
        Diffusion steps (self-mapping only): ``M^t @ field`` by ``t`` passes over the stored chunks.
    symmetrize_method
        Self-mapping: transfer through the row-normalised ``max``/``mean``/``union`` of K and Kᵀ
        (built out of core once, kept in the store as graph ``sym_<method>``).
    graph
        A derived operator stored in the store to use instead of its default.
    memory_budget
        Bounds gathered reference rows per sub-block and decides where diffusion state lives.
    """
    store.require_complete()
    t = parse_positive_int(t, "t")
    threshold = parse_threshold(threshold)
    budget = parse_bytes(memory_budget)
    if t > 1:
        require_self_mapping(store, f"diffusion t={t}")
    fields = build_fields(spec, reference, store.n_reference)
    if not fields:
        return
    op = symmetrize(store, symmetrize_method, budget) if symmetrize_method else operator_for(store, graph)
    chunk_rows = store.chunk_rows
    sub_rows = sub_rows_for(chunk_rows, op.mean_row_nnz, sum(f.width for f in fields), budget)
    outputs = [FieldOutput(store, f, sub_rows, threshold) for f in fields]
    log.info("transfer %s through %s, t=%d", [f.name for f in fields], type(op).__name__, t)
    try:
        diffuse(
            op,
            fields,
            [o.write for o in outputs],
            t,
            chunk_rows,
            sub_rows,
            budget,
            scratch=lambda: store.group.require_group(SCRATCH),
        )
    finally:
        if SCRATCH in store.group:
            del store.group[SCRATCH]
    operator = f"sym_{symmetrize_method}" if symmetrize_method else (graph or store.attrs.get("operator") or "mapping")
    for out in outputs:
        out.finish({"t": t, "operator": operator})
