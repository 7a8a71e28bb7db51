"""KMeans backends, ``auto`` choices, k suggestion, composition, and 2-D projections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from raymap.explore.cluster import (
    AUTO_FAISS_MIN_ROWS,
    AUTO_GPU_MIN_ROWS,
    available_kmeans_backends,
    choose_kmeans_backend,
    cluster_rows,
    composition,
    fit_kmeans,
    suggest_k,
)
from raymap.explore.project import (
    AUTO_GPU_MIN_ROWS as PROJECT_GPU_MIN_ROWS,
)
from raymap.explore.project import (
    Projector,
    available_projection_backends,
    choose_projection_backend,
    project_rows,
)
from raymap.explore.tasks import step_options
from raymap.sources import ArraySource


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=3_000, n_features=32, centers=6, cluster_std=1.0, center_box=(-20, 20), random_state=0)
    return x.astype(np.float32), y


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_kmeans_backends_recover_well_separated_clusters(blobs, backend):
    x, truth = blobs
    model = fit_kmeans(x, 6, backend=backend, seed=0)
    assert model.backend == backend and model.centroids.shape == (6, 32)
    assert adjusted_rand_score(truth, model.assign(x)) >= 0.9


def test_kmeans_backends_agree_and_are_seeded(blobs):
    x, _ = blobs
    faiss_labels = fit_kmeans(x, 6, backend="faiss", seed=1).assign(x)
    sklearn_labels = fit_kmeans(x, 6, backend="sklearn", seed=1).assign(x)
    assert adjusted_rand_score(faiss_labels, sklearn_labels) >= 0.9
    again = fit_kmeans(x, 6, backend="faiss", seed=1)
    assert np.array_equal(again.assign(x), faiss_labels)


def test_auto_picks_the_documented_backend():
    cpu = ["faiss", "sklearn"]
    assert choose_kmeans_backend("auto", AUTO_FAISS_MIN_ROWS - 1, cpu) == "sklearn"
    assert choose_kmeans_backend("auto", AUTO_FAISS_MIN_ROWS, cpu) == "faiss"
    assert choose_kmeans_backend("auto", 10**7, cpu) == "faiss"
    gpu = [*cpu, "faiss-gpu"]
    assert choose_kmeans_backend("auto", AUTO_GPU_MIN_ROWS, gpu) == "faiss-gpu"
    assert choose_kmeans_backend("auto", AUTO_GPU_MIN_ROWS - 1, gpu) == "faiss"
    assert choose_kmeans_backend("auto", AUTO_GPU_MIN_ROWS, [*gpu, "cuml"]) == "cuml"
    assert choose_kmeans_backend("auto", 100, [*gpu, "cuml"]) == "sklearn"
    assert choose_kmeans_backend("sklearn", 10**7, cpu) == "sklearn"
    with pytest.raises(ValueError, match="'cuml' is not usable here"):
        choose_kmeans_backend("cuml", 100, cpu)
    with pytest.raises(ValueError, match="unknown KMeans backend 'kmeans'"):
        choose_kmeans_backend("kmeans", 100, cpu)
    # This machine: no GPU, so only the CPU backends, and auto follows the row thresholds.
    assert set(available_kmeans_backends()) >= {"faiss", "sklearn"}
    assert choose_kmeans_backend("auto", 100) == "sklearn"

    assert choose_projection_backend("umap", "auto", 10**6, ["umap-learn"]) == "umap-learn"
    assert choose_projection_backend("umap", "auto", PROJECT_GPU_MIN_ROWS, ["umap-learn", "cuml"]) == "cuml"
    assert choose_projection_backend("pca", "auto", PROJECT_GPU_MIN_ROWS - 1, ["sklearn", "cuml"]) == "sklearn"
    assert choose_projection_backend("tsne", "auto", 10**6, ["opentsne", "sklearn"]) == "opentsne"
    assert choose_projection_backend("tsne", "auto", 10**6, ["sklearn"]) == "sklearn"
    assert available_projection_backends("tsne")[:2] == ["opentsne", "sklearn"]
    with pytest.raises(ValueError, match="unknown projection method 'mds'"):
        choose_projection_backend("mds", "auto", 10)


def test_step_options_ask_for_a_gpu_only_when_the_cluster_has_one():
    assert step_options(total_gpus=2, node_cpus=16) == {"num_gpus": 1, "num_cpus": 1}
    assert step_options(total_gpus=0, node_cpus=2) == {"num_gpus": 0, "num_cpus": 2}
    assert step_options(total_gpus=0, node_cpus=64)["num_cpus"] == 4


def test_bad_k_is_a_clear_error(blobs):
    x, _ = blobs
    with pytest.raises(ValueError, match="k=11 clusters need at least 11 rows; got 10"):
        fit_kmeans(x[:10], 11)
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        fit_kmeans(x, 0)
    source = ArraySource(x[:50])
    with pytest.raises(ValueError, match="k=51 clusters need at least 51 rows; got 50"):
        cluster_rows(source, np.arange(50), 51)
    with pytest.raises(ValueError, match="'auto'"):
        cluster_rows(source, np.arange(50), "many")


def test_suggest_k_and_streamed_labels(blobs):
    x, truth = blobs
    k, scores = suggest_k(x, k_range=(2, 9), seed=0, sample=1_500)
    assert k == 6 and set(scores) == set(range(2, 10))
    out = cluster_rows(ArraySource(x), np.arange(len(x)), "auto", seed=0, fit_rows=600, batch_rows=256)
    assert out.model.k == 6 and out.k_scores
    assert adjusted_rand_score(truth, out.labels) >= 0.9  # 600 fitted rows label all 3,000


def test_composition_counts_and_shares():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    values = pd.Series(["a", "a", "b", "c", "c", "c", None])
    comp = composition(labels, values)
    assert comp.groupby("cluster")["share"].sum().round(9).tolist() == [1.0, 1.0]
    first = comp[comp.cluster == 0].iloc[0]
    assert (first["value"], first["count"], round(first["share"], 3)) == ("a", 2, 0.667)
    assert comp[comp.cluster == 1]["count"].tolist() == [3, 1]
    assert len(composition(labels, values, top=1)) == 2
    with pytest.raises(ValueError, match="differ in length"):
        composition(labels, values[:3])


@pytest.mark.parametrize(
    ("method", "backend"), [("pca", "auto"), ("umap", "auto"), ("tsne", "auto"), ("tsne", "sklearn")]
)
def test_projection_shapes_and_seeded_determinism(blobs, method, backend):
    x = blobs[0][:250]
    first = Projector(method, backend, seed=7)
    coords = first.fit(x)
    assert coords.shape == (250, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert np.array_equal(coords, Projector(method, backend, seed=7).fit(x))
    if first.can_transform:
        placed = first.transform(blobs[0][250:300])
        assert placed.shape == (50, 2) and np.isfinite(placed).all()
    else:
        with pytest.raises(ValueError, match="cannot place new rows"):
            first.transform(blobs[0][250:300])


def test_projection_needs_three_rows(blobs):
    with pytest.raises(ValueError, match="needs at least 3 rows"):
        Projector("pca").fit(blobs[0][:2])
    with pytest.raises(ValueError, match="needs at least 3 rows"):
        project_rows(ArraySource(blobs[0][:2]), np.arange(2), "umap")
    assert Projector("pca").fit(blobs[0][:3]).shape == (3, 2)


def test_project_rows_places_the_rest_in_batches(blobs):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3_000, 16)) * np.r_[10.0, 5.0, np.ones(14)]).astype(np.float32)  # two clear axes
    source = ArraySource(x)
    rows = np.arange(0, len(x), 2)
    out = project_rows(source, rows, "pca", seed=0, fit_rows=200, batch_rows=128)
    assert out.placed_all and out.coords.shape == (len(rows), 2) and np.isfinite(out.coords).all()
    full = Projector("pca", seed=0).fit(x[rows])
    # PCA fitted on 200 rows places the rest close to a fit on all of them (up to axis signs).
    corr = [abs(np.corrcoef(out.coords[:, i], full[:, i])[0, 1]) for i in range(2)]
    assert min(corr) > 0.98
    source = ArraySource(blobs[0])
    fit_only = project_rows(source, rows[:300], "tsne", backend="sklearn", seed=0, fit_rows=100)
    assert not fit_only.placed_all and len(fit_only.fitted) == 100
    assert np.isfinite(fit_only.coords[fit_only.fitted]).all()
    assert np.isnan(np.delete(fit_only.coords, fit_only.fitted, axis=0)).all()
