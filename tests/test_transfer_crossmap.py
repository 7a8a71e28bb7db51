"""Joint kernels (jaccard, hnoca) combined chunk by chunk from four stores equal CellMapper's dense formula."""

from __future__ import annotations

import numpy as np
import pytest
from transfer_stores import blobs, build_store, normalise_rows

from raymap.crossmap import joint_kernel
from raymap.result import MappingResult

N_REF, N_QUERY, K = 300, 140, 6
TOL = {"rtol": 1e-6, "atol": 1e-6}


def adjacency(store, self_edges: bool) -> np.ndarray:
    ids = store.neighbors()[0].astype(np.int64)
    a = np.zeros((store.n_query, store.n_reference))
    np.put_along_axis(a, ids, 1.0, axis=1)
    if self_edges:
        a[np.arange(store.n_query), np.arange(store.n_query)] = 1.0
    return a


def dense_joint(yx, xx, yy, xy, kernel: str, self_map: bool) -> np.ndarray:
    """CellMapper's Kernel.compute_kernel_matrix for jaccard/hnoca, then row normalisation."""
    counts = adjacency(yx, self_map) @ adjacency(xx, True).T + adjacency(yy, True) @ adjacency(xy, self_map).T
    k = yx.k
    values = np.divide(counts, 4 * k - counts, out=np.zeros_like(counts), where=counts > 0)
    return normalise_rows(values**2 if kernel == "hnoca" else values)


@pytest.fixture(scope="module", params=[1_000, 32], ids=["one-chunk", "many-chunks"])
def stores(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    xb, tb = blobs(N_REF, 6, 4, seed=11)
    xq, _ = blobs(N_QUERY, 6, 4, seed=12)
    c = request.param
    return {
        "yx": build_store(root / "yx.zarr", xq, xb, K, c, "equal"),
        "xx": build_store(root / "xx.zarr", xb, None, K - 1, c, "equal"),
        "yy": build_store(root / "yy.zarr", xq, None, K - 1, c, "equal"),
        "xy": build_store(root / "xy.zarr", xb, xq, K, c, "equal"),
        "self": build_store(root / "self.zarr", xb, None, K, c, "equal"),
        "labels": np.array(["a", "b", "c", "d"])[tb],
    }


@pytest.mark.parametrize("kernel", ["jaccard", "hnoca"])
def test_cross_joint_kernel_equals_dense(stores, kernel):
    roles = [stores[r] for r in ("yx", "xx", "yy", "xy")]
    graph = joint_kernel(*roles, kernel=kernel, memory_budget=400_000)  # several query sub-blocks per chunk
    np.testing.assert_allclose(graph.to_scipy().toarray(), dense_joint(*roles, kernel, False), **TOL)
    assert stores["yx"].attrs["operator"] == kernel


@pytest.mark.parametrize("kernel", ["jaccard", "hnoca"])
def test_self_joint_kernel_equals_dense(stores, kernel):
    s = stores["self"]
    graph = joint_kernel(s, s, s, s, kernel=kernel)
    np.testing.assert_allclose(graph.to_scipy().toarray(), dense_joint(s, s, s, s, kernel, True), **TOL)


def test_transfer_uses_the_joint_operator(stores):
    roles = [stores[r] for r in ("yx", "xx", "yy", "xy")]
    joint_kernel(*roles, kernel="jaccard")
    values = np.random.default_rng(4).normal(size=(N_REF, 2))
    spec = {"cell_type": ("categorical", stores["labels"]), "v": ("numeric", values)}
    result = MappingResult(stores["yx"].path).transfer(spec)
    m = dense_joint(*roles, "jaccard", False)
    np.testing.assert_allclose(result.values("v"), m @ values, **TOL)
    cats, codes = np.unique(stores["labels"], return_inverse=True)
    scores = m @ np.eye(len(cats))[codes]
    np.testing.assert_array_equal(result.labels("cell_type"), cats[scores.argmax(axis=1)])
    assert result.field("v").attrs["operator"] == "jaccard"
    with pytest.raises(ValueError, match="needs a self-mapping store"):
        result.transfer(spec, symmetrize="max")


def test_joint_kernel_checks_store_shapes(stores):
    with pytest.raises(ValueError, match=rf"xx store .* is {N_QUERY} x {N_QUERY}, expected {N_REF} x {N_REF}"):
        joint_kernel(stores["yx"], stores["yy"], stores["yy"], stores["xy"])
    with pytest.raises(ValueError, match="unknown joint kernel 'cosine'"):
        joint_kernel(stores["yx"], stores["xx"], stores["yy"], stores["xy"], kernel="cosine")
