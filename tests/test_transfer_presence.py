"""Presence scores streamed over chunks equal CellMapper's dense definition; reference-only types score low."""

from __future__ import annotations

import numpy as np
import pytest
from transfer_stores import blobs, build_store

from raymap.result import MappingResult

TOL = {"rtol": 1e-6, "atol": 1e-6}


def dense_presence(store, log1p: bool, groups: np.ndarray | None = None) -> np.ndarray:
    """CellMapper's compute_presence_score on the full matrix: gauss connectivities, column sums, processing."""
    ids, dist = store.neighbors()
    d = dist.astype(np.float64)
    conn = np.zeros((store.n_query, store.n_reference))
    np.put_along_axis(conn, ids.astype(np.int64), np.exp(-(d**2) / (2 * d.mean() ** 2)), axis=1)
    if groups is None:
        raw = conn.sum(axis=0)[:, None]
    else:
        raw = np.stack([conn[groups == g].sum(axis=0) for g in np.unique(groups)], axis=1)
    scores = np.log1p(raw) if log1p else raw
    scores = np.clip(scores, np.percentile(scores, 1, axis=0), np.percentile(scores, 99, axis=0))
    return (scores - scores.min(axis=0)) / (scores.max(axis=0) - scores.min(axis=0))


@pytest.fixture(scope="module", params=[1_000, 48], ids=["one-chunk", "many-chunks"])
def mapped(request, tmp_path_factory):
    xb, _ = blobs(500, 6, 4, seed=7)
    xq, tq = blobs(220, 6, 4, seed=8)
    store = build_store(tmp_path_factory.mktemp("p") / "m.zarr", xq, xb, 8, request.param)
    return store, np.array(["g0", "g1", "g2", "g3"])[tq]


@pytest.mark.parametrize("log1p", [False, True])
def test_presence_equals_dense(mapped, log1p):
    store, groups = mapped
    result = MappingResult(store.path)
    result.presence(groupby=groups, log1p=log1p)
    np.testing.assert_allclose(result.presence_score(), dense_presence(store, log1p)[:, 0], **TOL)
    table = result.presence_score(groups=True)
    assert list(table.columns) == ["g0", "g1", "g2", "g3"]
    np.testing.assert_allclose(table.to_numpy(), dense_presence(store, log1p, groups), **TOL)
    assert result.summary()["presence_score"]["kind"] == "presence"


def test_presence_into_anndata(mapped):
    import anndata as ad

    store, groups = mapped
    result = MappingResult(store.path)
    result.presence(groupby=groups)
    reference = ad.AnnData(X=np.zeros((store.n_reference, 1), np.float32))
    result.to_anndata(reference=reference)
    np.testing.assert_allclose(reference.obs["presence_score"], result.presence_score())
    assert reference.obsm["presence_score"].shape == (store.n_reference, 4)


def test_presence_bad_input(mapped):
    store, groups = mapped
    result = MappingResult(store.path)
    with pytest.raises(ValueError, match=f"groupby has 10 labels, the query has {store.n_query} rows"):
        result.presence(groupby=groups[:10])
    with pytest.raises(ValueError, match=r"per-group scores need .* more than memory_budget=1000"):
        result.presence(groupby=groups, memory_budget=1000)
    with pytest.raises(ValueError, match=r"percentile: expected 0 <= low <= high <= 100, got \(5, 101\)"):
        result.presence(percentile=(5, 101))
    with pytest.raises(ValueError, match="reference_labels has 3 rows"):
        result.presence(reference_labels=np.array(["a", "b", "c"]))


def test_reference_only_types_score_lowest(tmp_path):
    """The demo atlas's two reference-only cell types are the two least present groups."""
    from raymap import datasets
    from raymap.sources import ParquetSource

    atlas = datasets.cell_atlas(tmp_path, n_ref=3_000, n_query=1_000, formats=("parquet",))
    ref, query = ParquetSource(atlas.reference["parquet"]), ParquetSource(atlas.query["parquet"])
    store = build_store(tmp_path / "m.zarr", query.read(0, query.n_rows), ref.read(0, ref.n_rows), 30, 512)
    by_type = MappingResult(store.path).presence(reference_labels="cell_type", reference=ref)
    lowest = sorted(by_type, key=by_type.get)[:2]
    assert sorted(lowest) == sorted(atlas.ref_only_types)
    others = [v for k, v in by_type.items() if k not in atlas.ref_only_types]
    assert max(by_type[t] for t in atlas.ref_only_types) < 0.75 * np.mean(others)
