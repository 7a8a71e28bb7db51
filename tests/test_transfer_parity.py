"""Parity with the ``cellmapper`` package: the same matrices from the same neighbours, the same labels end to end.

Skipped when cellmapper (bench/test extra, Python >= 3.12) is not importable.
"""

from __future__ import annotations

import numpy as np
import pytest
from transfer_stores import blobs, build_store

cellmapper = pytest.importorskip("cellmapper")

from cellmapper.model.kernel import Kernel  # noqa: E402
from cellmapper.model.mapping_operator import MappingOperator  # noqa: E402

from raymap.crossmap import joint_kernel  # noqa: E402
from raymap.result import MappingResult  # noqa: E402
from raymap.transfer import symmetrize  # noqa: E402

K = 10
TOL = {"rtol": 1e-5, "atol": 1e-6}  # CellMapper keeps float32 matrices and sklearn's float64 distances


def cellmapper_matrix(xb: np.ndarray, xq: np.ndarray | None, kernel: str, k: int, **kw) -> np.ndarray:
    knn = Kernel(xb.astype(np.float64), None if xq is None else xq.astype(np.float64), is_self_mapping=xq is None)
    knn.compute_neighbors(n_neighbors=k, knn_method="sklearn")
    knn.compute_kernel_matrix(kernel, **kw)
    return np.asarray(MappingOperator(knn).matrix.toarray(), dtype=np.float64)


@pytest.mark.parametrize("chunk_rows", [1_000, 64])
def test_umap_union_matches_cellmapper_self_mapping(tmp_path, chunk_rows):
    """raymap's umap kernel + out-of-core fuzzy union = CellMapper's default self-mapping operator (k + self)."""
    x, _ = blobs(350, 6, 4, seed=21)
    store = build_store(tmp_path / "s.zarr", x, None, K, chunk_rows, "umap")
    ours = symmetrize(store, "union", memory_budget=50_000).to_scipy().toarray()
    theirs = cellmapper_matrix(x, None, "umap", K + 1, symmetrize=True, self_edges=True)
    np.testing.assert_allclose(ours, theirs, **TOL)


@pytest.mark.parametrize("kernel", ["jaccard", "hnoca"])
def test_joint_kernels_match_cellmapper(tmp_path, kernel):
    xb, _ = blobs(300, 6, 4, seed=22)
    xq, _ = blobs(120, 6, 4, seed=23)
    roles = (
        build_store(tmp_path / "yx.zarr", xq, xb, K, 64, "equal"),
        build_store(tmp_path / "xx.zarr", xb, None, K - 1, 64, "equal"),
        build_store(tmp_path / "yy.zarr", xq, None, K - 1, 64, "equal"),
        build_store(tmp_path / "xy.zarr", xb, xq, K, 64, "equal"),
    )
    ours = joint_kernel(*roles, kernel=kernel).to_scipy().toarray()
    np.testing.assert_allclose(ours, cellmapper_matrix(xb, xq, kernel, K), **TOL)


def test_presence_matches_cellmapper(tmp_path):
    import anndata as ad
    from cellmapper import CellMapper

    xb, _ = blobs(400, 6, 4, seed=24)
    xq, tq = blobs(150, 6, 4, seed=25)
    store = build_store(tmp_path / "m.zarr", xq, xb, K, 64)
    groups = np.array(["g0", "g1", "g2", "g3"])[tq]
    query = ad.AnnData(obsm={"X_pca": xq.astype(np.float64)}, obs={"g": groups})
    reference = ad.AnnData(obsm={"X_pca": xb.astype(np.float64)})
    cm = CellMapper(query, reference)
    cm.compute_neighbors(n_neighbors=K, use_rep="X_pca", knn_method="sklearn", only_yx=True)
    cm.compute_presence_score(groupby="g", log=True)
    result = MappingResult(store.path)
    result.presence(groupby=groups, log1p=True)
    np.testing.assert_allclose(result.presence_score(), reference.obs["presence_score"], **TOL)
    theirs = reference.obsm["presence_score"][sorted(set(groups))].to_numpy()
    np.testing.assert_allclose(result.presence_score(groups=True).to_numpy(), theirs, **TOL)


# --- end to end through raymap.map (real local Ray) -----------------------------------


@pytest.fixture(scope="module")
def small_atlas(tmp_path_factory):
    import anndata as ad

    from raymap import datasets

    atlas = datasets.cell_atlas(tmp_path_factory.mktemp("atlas"), n_ref=3_000, n_query=1_000, formats=("h5ad",))
    return atlas, ad.read_h5ad(atlas.query["h5ad"]), ad.read_h5ad(atlas.reference["h5ad"])


@pytest.mark.ray
@pytest.mark.parametrize("kernel", ["gauss", "jaccard"])
def test_labels_agree_with_cellmapper(ray_cluster, small_atlas, tmp_path, kernel):
    from cellmapper import CellMapper

    import raymap

    atlas, query, reference = small_atlas
    result = raymap.map(
        atlas.query["h5ad"], atlas.reference["h5ad"], tmp_path / "m.zarr", k=30, kernel=kernel, index="Flat",
        transfer={"cell_type": "categorical"},
    )  # fmt: off
    cm = CellMapper(query.copy(), reference)
    cm.map(obs_keys="cell_type", use_rep="X_pca", n_neighbors=30, knn_method="sklearn", kernel_method=kernel)
    agreement = (result.labels("cell_type") == cm.query.obs["cell_type_pred"].astype(str).to_numpy()).mean()
    assert agreement >= 0.99, agreement


@pytest.mark.ray
def test_self_mapping_umap_diffusion_agrees_with_cellmapper(ray_cluster, small_atlas, tmp_path):
    """map(kernel="umap") self-mapping + fuzzy union + t=3 = CellMapper's self-mapping defaults with t=3."""
    from cellmapper import CellMapper

    import raymap

    atlas, _, reference = small_atlas
    result = raymap.map(atlas.reference["h5ad"], None, tmp_path / "s.zarr", k=29, kernel="umap", index="Flat")
    result.transfer({"cell_type": "categorical", "score": "numeric"}, t=3, symmetrize="union")
    cm = CellMapper(reference.copy())
    cm.map(obs_keys=["cell_type", "score"], use_rep="X_pca", n_neighbors=30, knn_method="sklearn", t=3)
    agreement = (result.labels("cell_type") == cm.query.obs["cell_type_pred"].astype(str).to_numpy()).mean()
    assert agreement >= 0.99, agreement
    np.testing.assert_allclose(result.values("score"), cm.query.obs["score_pred"], rtol=1e-3, atol=1e-3)
