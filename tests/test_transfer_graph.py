"""Self-mapping operators out of core: umap kernel, bucketed transpose, symmetrisation, diffusion t > 1 (vs dense)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from transfer_stores import blobs, build_store, exact_knn, normalise_rows, raw_kernel

from raymap.kernels import KERNELS, kernel_values
from raymap.result import MappingResult
from raymap.transfer import CSRGraph, symmetrize
from raymap.transfer.buckets import EdgeBuckets, transpose_into
from raymap.transfer.stream import sub_rows_for

N, K = 400, 6
TOL = {"rtol": 1e-6, "atol": 1e-6}
SYM = {
    "max": lambda k: np.maximum(k, k.T),
    "mean": lambda k: (k + k.T) / 2,
    "union": lambda k: k + k.T - k * k.T,
}


@pytest.fixture(scope="module")
def points():
    x, types = blobs(N, 6, 4, seed=5)
    return x, types


@pytest.fixture(scope="module", params=[(1_000, "gauss"), (48, "gauss"), (48, "umap")], ids=lambda p: f"{p[0]}-{p[1]}")
def self_store(request, points, tmp_path_factory):
    chunk_rows, kernel = request.param
    return build_store(tmp_path_factory.mktemp("self") / "s.zarr", points[0], None, K, chunk_rows, kernel)


def test_umap_kernel_equals_umap_membership(points):
    """Row-local UMAP weights equal umap-learn's fuzzy_simplicial_set (before its union) with a self column."""
    from umap.umap_ import fuzzy_simplicial_set

    ids, dist = exact_knn(points[0], points[0], K, exclude_self=True)
    ours = kernel_values(KERNELS["umap"], dist, 0.0)
    with_self = np.hstack([np.arange(N)[:, None], ids]), np.hstack([np.zeros((N, 1), np.float32), dist])
    graph = fuzzy_simplicial_set(
        sp.coo_matrix((N, 1)), K + 1, None, None, knn_indices=with_self[0], knn_dists=with_self[1],
        apply_set_operations=False,
    )[0].tocsr()  # fmt: off
    np.testing.assert_allclose(np.take_along_axis(graph.toarray(), ids, axis=1), ours, **TOL)
    assert KERNELS["umap"].self_only


@pytest.mark.parametrize("method", sorted(SYM))
def test_symmetrize_equals_dense(self_store, method):
    graph = symmetrize(self_store, method, memory_budget=60_000)  # several buckets
    expected = normalise_rows(SYM[method](raw_kernel(self_store).toarray()))
    np.testing.assert_allclose(graph.to_scipy().toarray(), expected, **TOL)
    assert graph.shape == (N, N) and graph.complete
    assert symmetrize(self_store, method).group.path == graph.group.path  # reused, not rebuilt


@pytest.mark.parametrize("budget", ["1GiB", 100_000], ids=["state-in-memory", "state-in-zarr"])
def test_diffusion_equals_dense_power(self_store, points, budget, caplog):
    names = np.array(["a", "b", "c", "d"], dtype=object)
    labels = names[points[1]]
    values = np.random.default_rng(0).normal(size=(N, 3))
    spec = {"cell_type": ("categorical", labels), "vals": ("numeric", values), "one": ("numeric", values[:, 0])}
    with caplog.at_level("INFO", logger="raymap.transfer.stream"):
        result = MappingResult(self_store.path).transfer(spec, t=3, memory_budget=budget)
    assert ("in zarr" if budget == 100_000 else "in memory") in caplog.text
    m = self_store.to_scipy().toarray().astype(np.float64)
    m3 = m @ m @ m
    np.testing.assert_allclose(result.values("vals"), m3 @ values, **TOL)
    np.testing.assert_allclose(result.values("one"), m3 @ values[:, 0], **TOL)
    scores = m3 @ np.eye(4)[points[1]]
    np.testing.assert_array_equal(result.labels("cell_type"), names[scores.argmax(axis=1)])
    np.testing.assert_allclose(result.confidence("cell_type"), scores.max(axis=1), **TOL)
    assert "_diffusion" not in result.store.group["transfer"]  # scratch state removed


def test_diffusion_through_symmetrised_operator(self_store):
    values = np.random.default_rng(1).normal(size=N)
    result = MappingResult(self_store.path).transfer({"v": ("numeric", values)}, t=2, symmetrize="union")
    s = normalise_rows(SYM["union"](raw_kernel(self_store).toarray()))
    np.testing.assert_allclose(result.values("v"), s @ s @ values, **TOL)
    assert result.field("v").attrs["operator"] == "sym_union"


def test_bucketed_transpose(tmp_path):
    rng = np.random.default_rng(2)
    m = sp.random(300, 170, density=0.05, format="csr", random_state=rng)
    blocks = [(s, m[s : s + 64]) for s in range(0, 300, 64)]
    buckets = EdgeBuckets(tmp_path, (170, 300), bucket_rows=50, flush_bytes=2_000)  # many flushes, 4 buckets
    transpose_into(blocks, buckets)
    assert buckets.n_buckets == 4 and buckets.edges_written == m.nnz
    parts = list(buckets)
    assert [s for s, _ in parts] == [0, 50, 100, 150]
    np.testing.assert_array_equal(sp.vstack([b for _, b in parts]).toarray(), m.T.toarray())
    assert not list(tmp_path.iterdir())  # bucket files are removed once read


def test_csr_graph_rows_take_and_incomplete(tmp_path):
    import zarr

    m = sp.random(90, 40, density=0.1, format="csr", random_state=3, dtype=np.float32)
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    graph = CSRGraph.create(group, "g", m.shape, {"chunk_rows": 25})
    graph.append(m[:30])
    with pytest.raises(RuntimeError, match="incomplete"):
        graph.rows(0, 10)
    graph.append(m[30:])
    graph.finish()
    reopened = CSRGraph(group["graphs/g"])
    np.testing.assert_array_equal(reopened.to_scipy().toarray(), m.toarray())
    ids = np.array([0, 5, 29, 30, 89])
    np.testing.assert_array_equal(reopened.take(ids).toarray(), m[ids].toarray())
    assert [s for s, _ in reopened.iter_csr()] == [0, 25, 50, 75]


def test_sub_rows_divide_chunks_within_budget():
    assert sub_rows_for(1_000, 7, 72, 1 << 30) == 1_000
    assert sub_rows_for(1_000, 7, 72, 200_000) == 20  # target 21 rows: the largest divisor below
    assert sub_rows_for(48, 7, 72, 200_000) == 16
    assert sub_rows_for(48, 7, 72, 1) == 1
