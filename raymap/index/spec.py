"""IndexSpec: which faiss index, which metric, which backend; and the ``auto`` size rules."""

from __future__ import annotations

import math
from dataclasses import dataclass

from raymap._parse import parse_choice

METRICS = ("l2", "cosine")
BACKENDS = ("auto", "faiss-cpu", "faiss-gpu", "torch-exact")
# Reference sizes where ``auto`` switches index type (DESIGN.md "Defaults that scale").
FLAT_MAX_ROWS = 200_000
IVF_FLAT_MAX_ROWS = 100_000_000


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """What to build and how to search it.

    Attributes
    ----------
    factory
        A faiss ``index_factory`` string (``"Flat"``, ``"IVF4096,Flat"``, ``"IVF65536,PQ25x8"``) or
        ``"auto"`` to choose by reference size.
    metric
        ``"l2"`` (distances are true Euclidean) or ``"cosine"`` (vectors normalised, distance 1 - cos).
    nprobe
        IVF cells probed per query; ``None`` tunes it on a held-out sample to reach ``target_recall``.
    target_recall
        Recall@k against exact search that nprobe tuning aims for.
    backend
        ``"auto"`` or one of :data:`BACKENDS`.
    """

    factory: str = "auto"
    metric: str = "l2"
    nprobe: int | None = None
    target_recall: float = 0.95
    backend: str = "auto"

    def __post_init__(self) -> None:
        parse_choice(self.metric, METRICS, "metric")
        parse_choice(self.backend, BACKENDS, "index backend")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.nprobe is not None and self.nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {self.nprobe}")

    @property
    def faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT


def resolve_factory(factory: str, n_rows: int, dim: int) -> str:
    """The concrete factory string: ``auto`` becomes Flat / IVF-Flat / IVF-PQ by ``n_rows``.

    ``nlist`` is about 4·sqrt(n) (the nearest power of two), so each list holds ~sqrt(n)/4 vectors and
    training needs ~64·nlist rows (faiss warns below 39).
    """
    if factory != "auto":
        import faiss

        try:
            faiss.index_factory(dim, factory)
        except RuntimeError as e:
            raise ValueError(f"invalid faiss factory string {factory!r} for dim {dim}: {e}") from None
        return factory
    if n_rows <= FLAT_MAX_ROWS:
        return "Flat"
    nlist = 2 ** round(math.log2(4 * n_rows**0.5))
    if n_rows <= IVF_FLAT_MAX_ROWS:
        return f"IVF{nlist},Flat"
    m = next(m for m in (dim // 2, dim // 4, dim) if m and dim % m == 0)
    return f"IVF{nlist},PQ{m}x8"
