"""2-D projections (PCA, UMAP, t-SNE) on CPU or cuML behind one Projector: fit on a sample, place the rest.

``auto`` picks ``cuml`` when cuML imports, a CUDA device is visible and the fit has at least
``AUTO_GPU_MIN_ROWS`` rows; otherwise scikit-learn PCA, umap-learn UMAP, and openTSNE for t-SNE
(scikit-learn t-SNE when openTSNE is missing). openTSNE is preferred because it can place new
points into a fitted map (``transform``); scikit-learn's and cuML's t-SNE cannot, so with them
only the fitted rows get coordinates (``Projector.can_transform`` says which).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from raymap._parse import parse_choice, require_usable
from raymap.explore.sample import gather, iter_rows, uniform_rows
from raymap.explore.tasks import cuda_device_count, threads
from raymap.sources import EmbeddingSource

log = logging.getLogger(__name__)

METHODS = ("pca", "umap", "tsne")
BACKENDS = {"pca": ("sklearn", "cuml"), "umap": ("umap-learn", "cuml"), "tsne": ("opentsne", "sklearn", "cuml")}
AUTO_GPU_MIN_ROWS = 5_000
MIN_ROWS = 3
# Rows a projection is fitted on before the rest are placed by ``transform`` (PCA is cheap to fit).
DEFAULT_FIT_ROWS = {"pca": 100_000, "umap": 20_000, "tsne": 20_000}
UMAP_NEIGHBORS = 15
TSNE_PERPLEXITY = 30.0
# Fits below this many rows run on one thread: OpenMP's spinning threads bring little there and,
# measured on 2 busy cores, made 250-row t-SNE fits 10-20x slower.
THREADED_MIN_ROWS = 10_000


_MODULES = {"sklearn": "sklearn", "umap-learn": "umap", "opentsne": "openTSNE", "cuml": "cuml"}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_projection_backends(method: str) -> list[str]:
    """Backends for ``method`` usable in this process."""
    parse_choice(method, METHODS, "projection method")
    have = [b for b in BACKENDS[method] if b != "cuml" and _importable(_MODULES[b])]
    if _importable("cuml") and cuda_device_count() > 0:
        have.append("cuml")
    return have


def choose_projection_backend(method: str, requested: str, n_rows: int, available: list[str] | None = None) -> str:
    """Resolve ``requested`` for ``method``: ``auto`` by the rules in the module docstring."""
    parse_choice(method, METHODS, "projection method")
    parse_choice(requested, ("auto", *BACKENDS[method]), f"{method} backend")
    have = available_projection_backends(method) if available is None else available
    if requested != "auto":
        return require_usable(requested, have, method)
    if "cuml" in have and n_rows >= AUTO_GPU_MIN_ROWS:
        choice, why = "cuml", f"cuML and a GPU, {n_rows} >= {AUTO_GPU_MIN_ROWS} rows"
    else:
        cpu = [b for b in BACKENDS[method] if b != "cuml" and b in have]
        if not cpu:
            raise ValueError(f"no CPU backend for {method} is installed; wanted one of {BACKENDS[method][:-1]}")
        choice, why = cpu[0], "CPU" if "cuml" not in have else f"{n_rows} < {AUTO_GPU_MIN_ROWS} rows"
    log.info("%s backend %s (%s; available: %s)", method, choice, why, have)
    return choice


def _estimator(method: str, backend: str, n_rows: int, seed: int) -> Any:
    """An unfitted estimator sized for ``n_rows`` (neighbours and perplexity must stay below n)."""
    neighbors = max(2, min(UMAP_NEIGHBORS, n_rows - 1))
    perplexity = max(1.0, min(TSNE_PERPLEXITY, (n_rows - 1) / 3))
    if backend == "cuml":
        import cuml

        if method == "pca":
            return cuml.PCA(n_components=2, output_type="numpy")
        if method == "umap":
            return cuml.UMAP(n_components=2, n_neighbors=neighbors, random_state=seed, output_type="numpy")
        return cuml.TSNE(n_components=2, perplexity=perplexity, random_state=seed, output_type="numpy")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed)
    if method == "umap":
        import umap

        return umap.UMAP(
            n_components=2,
            n_neighbors=neighbors,
            random_state=seed,
            n_jobs=1,  # what a seeded UMAP runs with anyway; saying so silences its warning
            # Below 4,096 fitted rows umap-learn otherwise keeps exact neighbours, and its transform
            # then calls a Python metric per (new, fitted) pair: 18k rows took 180 s instead of 13 s.
            force_approximation_algorithm=True,
            init="spectral" if n_rows > 10 else "random",
        )
    if backend == "opentsne":
        import openTSNE

        # Its threads only pay off on larger fits; on small ones (and busy cores) they cost up to 10x.
        jobs = threads() if n_rows >= THREADED_MIN_ROWS else 1
        return openTSNE.TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=jobs)
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, perplexity=min(perplexity, n_rows - 1.0), random_state=seed, init="pca")


class Projector:
    """One 2-D projection: ``fit`` a sample (returns its coordinates), then ``transform`` more rows.

    Deterministic for a given ``seed`` (UMAP then runs its optimisation single-threaded).
    """

    def __init__(self, method: str = "pca", backend: str = "auto", seed: int = 0) -> None:
        self.method = parse_choice(method, METHODS, "projection method")
        self.requested = backend
        self.seed = seed
        self.backend: str | None = None
        self._model: Any = None

    @property
    def can_transform(self) -> bool:
        """Whether rows beyond the fitted ones can be placed (not for scikit-learn's or cuML's t-SNE)."""
        return self.method != "tsne" or self.backend == "opentsne"

    def fit(self, x: np.ndarray) -> np.ndarray:
        """Fit on ``x`` (n >= 3, dim) and return its ``(n, 2)`` float32 coordinates."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) < MIN_ROWS:
            raise ValueError(
                f"{self.method} projection needs at least {MIN_ROWS} rows of a 2-D array, got shape {x.shape}"
            )
        self.backend = choose_projection_backend(self.method, self.requested, len(x))
        est = _estimator(self.method, self.backend, len(x), self.seed)
        with threadpool_limits(limits=1 if len(x) < THREADED_MIN_ROWS else None):
            if self.backend == "opentsne":
                self._model = est.fit(x)  # a TSNEEmbedding: coordinates that can place new points
                coords = np.asarray(self._model)
            else:
                coords = est.fit_transform(x)
                self._model = est
        return _to_numpy(coords)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new rows into the fitted map; ValueError where the backend cannot (t-SNE without openTSNE)."""
        if self._model is None:
            raise ValueError("Projector.transform called before fit")
        if not self.can_transform:
            raise ValueError(f"t-SNE via {self.backend} cannot place new rows; fit on all rows or install openTSNE")
        return _to_numpy(self._model.transform(np.ascontiguousarray(x, dtype=np.float32)))


def _to_numpy(coords: Any) -> np.ndarray:
    if hasattr(coords, "get"):  # CuPy array from a cuML estimator
        coords = coords.get()
    return np.ascontiguousarray(coords, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ProjectionOutput:
    """2-D coordinates of a set of source rows and how they were made."""

    coords: np.ndarray  # (len(rows), 2) float32; NaN for rows a fit-only t-SNE could not place
    fitted: np.ndarray  # positions (into rows) of the rows the projection was fitted on
    method: str
    backend: str
    placed_all: bool  # False when the backend cannot transform and rows outnumbered the fit sample


def project_rows(
    source: EmbeddingSource,
    rows: np.ndarray,
    method: str = "pca",
    backend: str = "auto",
    seed: int = 0,
    fit_rows: int | None = None,
    batch_rows: int = 65_536,
) -> ProjectionOutput:
    """Project sorted source ``rows`` to 2-D: fit on a seeded sample, place the rest in streamed batches.

    PCA and UMAP (and openTSNE's t-SNE) place rows outside the fit sample with ``transform``;
    scikit-learn's and cuML's t-SNE are fitted on the sample only and the other rows stay NaN
    (logged, and ``placed_all`` is False).
    """
    if len(rows) < MIN_ROWS:
        raise ValueError(f"{method} projection needs at least {MIN_ROWS} rows, got {len(rows)}")
    projector = Projector(method, backend, seed)
    fitted = uniform_rows(len(rows), fit_rows or DEFAULT_FIT_ROWS[projector.method], seed)
    coords = np.full((len(rows), 2), np.nan, dtype=np.float32)
    coords[fitted] = projector.fit(gather(source, rows[fitted], batch_rows))
    rest = np.setdiff1d(np.arange(len(rows)), fitted, assume_unique=True)
    placed_all = rest.size == 0 or projector.can_transform
    if not placed_all:
        log.warning(
            "t-SNE via %s cannot place new rows: %d of %d rows have coordinates (the fit sample)",
            projector.backend,
            len(fitted),
            len(rows),
        )
    elif rest.size:
        for offset, block in iter_rows(source, rows[rest], batch_rows):
            coords[rest[offset : offset + len(block)]] = projector.transform(block)
    return ProjectionOutput(coords, fitted, projector.method, str(projector.backend), placed_all)
