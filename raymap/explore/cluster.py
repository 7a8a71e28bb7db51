"""KMeans behind one interface (faiss CPU/GPU, cuML, scikit-learn), ``auto`` choice, k suggestion, composition.

``auto`` picks, in order (thresholds are the constants below):

1. ``cuml`` when cuML imports and a CUDA device is visible, and the fit has at least
   ``AUTO_GPU_MIN_ROWS`` rows (below that, moving data to the card costs more than it saves);
2. ``faiss-gpu`` under the same row threshold when faiss itself sees a GPU;
3. ``faiss`` (multi-threaded CPU Lloyd) from ``AUTO_FAISS_MIN_ROWS`` rows;
4. ``sklearn`` below that: exact Lloyd with k-means++ restarts, best quality on small data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raymap._parse import parse_choice, require_usable
from raymap.explore.sample import gather, iter_rows, uniform_rows
from raymap.explore.tasks import cuda_device_count
from raymap.sources import EmbeddingSource

log = logging.getLogger(__name__)

KMEANS_BACKENDS = ("auto", "faiss", "faiss-gpu", "cuml", "sklearn")
AUTO_GPU_MIN_ROWS = 20_000
AUTO_FAISS_MIN_ROWS = 5_000
SUGGEST_K_RANGE = (2, 20)
SUGGEST_K_SAMPLE = 5_000


def available_kmeans_backends() -> list[str]:
    """KMeans backends usable in this process: what imports and what really sees a GPU."""
    import faiss

    have = ["faiss", "sklearn"]
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        have.append("faiss-gpu")
    try:
        import cuml  # noqa: F401
    except ImportError:
        return have
    if cuda_device_count() > 0:
        have.append("cuml")
    return have


def choose_kmeans_backend(requested: str, n_rows: int, available: list[str] | None = None) -> str:
    """Resolve ``requested`` (``auto`` by the rules in the module docstring) against ``available`` backends."""
    parse_choice(requested, KMEANS_BACKENDS, "KMeans backend")
    have = available_kmeans_backends() if available is None else available
    if requested != "auto":
        return require_usable(requested, have, "KMeans")
    if "cuml" in have and n_rows >= AUTO_GPU_MIN_ROWS:
        choice, why = "cuml", f"cuML and a GPU, {n_rows} >= {AUTO_GPU_MIN_ROWS} rows"
    elif "faiss-gpu" in have and n_rows >= AUTO_GPU_MIN_ROWS:
        choice, why = "faiss-gpu", f"faiss sees a GPU, {n_rows} >= {AUTO_GPU_MIN_ROWS} rows"
    elif n_rows >= AUTO_FAISS_MIN_ROWS:
        choice, why = "faiss", f"{n_rows} >= {AUTO_FAISS_MIN_ROWS} rows on CPU"
    else:
        choice, why = "sklearn", f"{n_rows} < {AUTO_FAISS_MIN_ROWS} rows"
    log.info("KMeans backend %s (%s; available: %s)", choice, why, have)
    return choice


@dataclass(frozen=True, slots=True)
class KMeansModel:
    """Fitted centroids; ``assign`` labels any rows by their nearest centroid."""

    centroids: np.ndarray  # (k, dim) float32
    backend: str  # the backend that fitted them
    inertia: float  # sum of squared distances of the fit rows to their centroid

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Nearest-centroid labels (int32) of ``x``: exact search over k centroids, cheap on CPU."""
        import faiss

        index = faiss.IndexFlatL2(self.centroids.shape[1])
        index.add(self.centroids)
        _, labels = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
        return labels[:, 0].astype(np.int32)


def _check_k(k: int, n_rows: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    if k > n_rows:
        raise ValueError(f"k={k} clusters need at least {k} rows; got {n_rows}")


def fit_kmeans(
    x: np.ndarray, k: int, backend: str = "auto", seed: int = 0, n_iter: int = 25, n_init: int = 3
) -> KMeansModel:
    """KMeans of ``x`` (n, dim) into ``k`` clusters: k-means++ starts, best of ``n_init`` runs."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"KMeans input must be 2-D (rows, dim), got shape {x.shape}")
    _check_k(k, len(x))
    backend = choose_kmeans_backend(backend, len(x))
    if backend in ("faiss", "faiss-gpu"):
        import faiss

        km = faiss.Kmeans(
            x.shape[1],
            int(k),
            niter=n_iter,
            nredo=n_init,
            seed=seed,
            gpu=backend == "faiss-gpu",
            max_points_per_centroid=math.ceil(len(x) / k),  # the caller already sampled: use every row
            min_points_per_centroid=1,
            init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        )
        km.train(x)
        centroids = km.centroids
    elif backend == "cuml":
        from cuml.cluster import KMeans as CuKMeans

        est = CuKMeans(n_clusters=int(k), max_iter=n_iter, n_init=n_init, random_state=seed, output_type="numpy")
        centroids = np.asarray(est.fit(x).cluster_centers_)
    else:
        from sklearn.cluster import KMeans

        est = KMeans(n_clusters=int(k), max_iter=n_iter, n_init=n_init, random_state=seed)
        centroids = est.fit(x).cluster_centers_
    model = KMeansModel(np.ascontiguousarray(centroids, dtype=np.float32), backend, 0.0)
    labels = model.assign(x)
    inertia = float(((x - model.centroids[labels]) ** 2).sum())
    return KMeansModel(model.centroids, backend, inertia)


def suggest_k(
    x: np.ndarray,
    k_range: tuple[int, int] = SUGGEST_K_RANGE,
    backend: str = "auto",
    seed: int = 0,
    sample: int = SUGGEST_K_SAMPLE,
) -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` (inclusive) with the best silhouette on a seeded sample of ``x``; all scores."""
    from sklearn.metrics import silhouette_score

    lo, hi = k_range
    if lo < 2 or hi < lo:
        raise ValueError(f"k_range must be (lo, hi) with 2 <= lo <= hi, got {k_range}")
    rng = np.random.default_rng(seed)
    if len(x) > sample:
        x = x[np.sort(rng.choice(len(x), size=sample, replace=False))]
    hi = min(hi, len(x) - 1)
    if hi < lo:
        raise ValueError(f"suggesting k needs at least {lo + 1} rows; got {len(x)}")
    scores = {}
    for k in range(lo, hi + 1):
        labels = fit_kmeans(x, k, backend=backend, seed=seed).assign(x)
        scores[k] = float(silhouette_score(x, labels)) if len(np.unique(labels)) > 1 else -1.0
    best = max(scores, key=lambda k: scores[k])
    log.info("suggested k=%d (silhouette %.3f over k in [%d, %d])", best, scores[best], lo, hi)
    return best, scores


def composition(labels: np.ndarray, values: np.ndarray | pd.Series, top: int | None = None) -> pd.DataFrame:
    """Per cluster: rows per value of a metadata column and their share of the cluster, largest first.

    Columns ``cluster, value, count, share``; ``top`` keeps each cluster's most frequent values.
    """
    if len(labels) != len(values):
        raise ValueError(f"labels ({len(labels)}) and values ({len(values)}) differ in length")
    frame = pd.DataFrame({"cluster": np.asarray(labels), "value": np.asarray(values, dtype=object)})
    counts = frame.groupby(["cluster", "value"], dropna=False).size().rename("count").reset_index()
    counts["share"] = counts["count"] / counts.groupby("cluster")["count"].transform("sum")
    counts = counts.sort_values(["cluster", "count"], ascending=[True, False], kind="stable")
    if top is not None:
        counts = counts.groupby("cluster", sort=False).head(top)
    return counts.reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class ClusterOutput:
    """KMeans of a set of source rows: a label per row, the model, and silhouette scores if k was suggested."""

    labels: np.ndarray  # (len(rows),) int32
    model: KMeansModel
    k_scores: dict[int, float]  # silhouette per candidate k; empty when k was given


def default_fit_rows(k: int) -> int:
    """Rows KMeans is fitted on: 256 per centroid (faiss's own cap), at least 50,000."""
    return max(50_000, 256 * k)


def cluster_rows(
    source: EmbeddingSource,
    rows: np.ndarray,
    k: int | str,
    backend: str = "auto",
    seed: int = 0,
    fit_rows: int | None = None,
    batch_rows: int = 65_536,
) -> ClusterOutput:
    """KMeans over sorted source ``rows``: fit on a seeded sample of them, then label all in streamed batches.

    ``k="auto"`` suggests k by silhouette (:func:`suggest_k`) on the fit sample. Only the fit
    sample and one batch of embeddings are in memory at a time.
    """
    if isinstance(k, str) and k != "auto":
        raise ValueError(f"k: expected an integer >= 1 or 'auto', got {k!r}")
    if not isinstance(k, str):
        _check_k(k, len(rows))
    n_fit = fit_rows or default_fit_rows(k if isinstance(k, int) else SUGGEST_K_RANGE[1])
    x_fit = gather(source, rows[uniform_rows(len(rows), n_fit, seed)], batch_rows)
    scores: dict[int, float] = {}
    if isinstance(k, str):
        k, scores = suggest_k(x_fit, backend=backend, seed=seed)
    model = fit_kmeans(x_fit, k, backend=backend, seed=seed)
    del x_fit
    labels = np.empty(len(rows), dtype=np.int32)
    for offset, block in iter_rows(source, rows, batch_rows):
        labels[offset : offset + len(block)] = model.assign(block)
    return ClusterOutput(labels, model, scores)
