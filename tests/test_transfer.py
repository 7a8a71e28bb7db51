"""Streamed categorical + numeric transfer equals the dense computation on the full matrix; bad input fails clearly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from transfer_stores import blobs, build_store

from raymap.result import MappingResult
from raymap.sources import AnnDataSource, ArraySource, NpySource, ParquetSource, ZarrSource
from raymap.store import IncompleteStoreError, MappingStore

N_REF, N_QUERY, K, TYPES = 600, 250, 7, 5
TOL = {"rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def data():
    xb, tb = blobs(N_REF, 8, TYPES, seed=1)
    xq, tq = blobs(N_QUERY, 8, TYPES, seed=2)
    rng = np.random.default_rng(3)
    return {
        "xb": xb,
        "xq": xq,
        "cell_type": np.array([f"type_{t}" for t in tb], dtype=object),
        "lineage": np.array(["L0", "L1"], dtype=object)[tb % 2],
        "score": rng.normal(0, 3, N_REF),
        "expr": rng.gamma(2.0, 1.5, (N_REF, 12)).astype(np.float32),
        "true_type": tq,
    }


@pytest.fixture(scope="module", params=[1_000, 48], ids=["one-chunk", "many-chunks"])
def store(request, data, tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("s") / "m.zarr", data["xq"], data["xb"], K, request.param)


def dense_vote(m: np.ndarray, labels: np.ndarray, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The textbook computation: scores = M @ onehot, label = argmax (first on ties), confidence = max."""
    cats, codes = np.unique(labels.astype(str), return_inverse=True)
    scores = m @ np.eye(len(cats))[codes]
    conf = scores.max(axis=1)
    pred = cats[scores.argmax(axis=1)].astype(object)
    pred[(conf <= 0) | (conf < threshold)] = "unknown"
    return pred, conf


def test_all_fields_in_one_pass_equal_dense(store, data, monkeypatch):
    passes = []
    real = MappingStore.iter_csr
    monkeypatch.setattr(MappingStore, "iter_csr", lambda self, *a: passes.append(1) or real(self, *a))
    spec = {
        "cell_type": ("categorical", data["cell_type"]),
        "lineage": ("categorical", data["lineage"]),
        "score": ("numeric", data["score"]),
        "expr": ("numeric", data["expr"]),
    }
    result = MappingResult(store.path).transfer(spec)
    assert len(passes) == 1  # four fields, one streamed pass over the chunks
    m = store.to_scipy().toarray().astype(np.float64)
    for name in ("cell_type", "lineage"):
        pred, conf = dense_vote(m, data[name])
        np.testing.assert_array_equal(result.labels(name), pred)
        np.testing.assert_allclose(result.confidence(name), conf, **TOL)
    np.testing.assert_allclose(result.values("score"), m @ data["score"], **TOL)
    np.testing.assert_allclose(result.values("expr"), m @ data["expr"].astype(np.float64), **TOL)
    assert result.values("expr").shape == (N_QUERY, 12)
    accuracy = (result.labels("cell_type") == np.array([f"type_{t}" for t in data["true_type"]])).mean()
    assert accuracy > 0.9


def test_threshold_marks_unknown(store, data):
    result = MappingResult(store.path).transfer({"cell_type": ("categorical", data["cell_type"])}, threshold=0.9)
    pred, _ = dense_vote(store.to_scipy().toarray().astype(np.float64), data["cell_type"], threshold=0.9)
    np.testing.assert_array_equal(result.labels("cell_type"), pred)
    assert 0 < (pred == "unknown").sum() < N_QUERY


def _list_column(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def _write_sources(tmp_path, expr: np.ndarray, emb: np.ndarray) -> dict[str, object]:
    """The same reference matrix in every on-disk form a numeric field can come from."""
    import anndata as ad

    np.save(tmp_path / "expr.npy", expr)
    z = zarr.create_array(tmp_path / "expr.zarr", shape=expr.shape, chunks=(64, expr.shape[1]), dtype="float32")
    z[:] = expr
    table = pa.table({"cell": np.arange(len(expr)), "expr": _list_column(expr), "emb": _list_column(emb)})
    pq.write_table(table, tmp_path / "ref.parquet", row_group_size=50)
    ad.AnnData(X=expr).write_h5ad(tmp_path / "ref.h5ad")
    return {
        "npy": NpySource(tmp_path / "expr.npy"),
        "zarr-source": ZarrSource(tmp_path / "expr.zarr"),
        "zarr-array": zarr.open_array(tmp_path / "expr.zarr", mode="r"),
        "zarr-path": str(tmp_path / "expr.zarr"),
        "parquet-list": ParquetSource(tmp_path / "ref.parquet", column="expr"),
        "h5ad-X": AnnDataSource(tmp_path / "ref.h5ad", use_rep="X"),
    }


@pytest.mark.parametrize("budget", ["1GiB", 200_000], ids=["whole-chunks", "sub-blocks"])
def test_numeric_from_disk_gathers_rows(store, data, tmp_path, budget):
    sources = _write_sources(tmp_path, data["expr"], data["xb"])
    spec = {name.replace("-", "_"): ("numeric", src) for name, src in sources.items()}
    result = MappingResult(store.path).transfer(spec, memory_budget=budget)
    expected = store.to_scipy().toarray().astype(np.float64) @ data["expr"].astype(np.float64)
    for name in spec:
        np.testing.assert_allclose(result.values(name), expected, **TOL, err_msg=name)


def test_parquet_list_column_of_the_reference_streams(store, data, tmp_path):
    """A list column of a Parquet reference is read lazily through its own ParquetSource."""
    _write_sources(tmp_path, data["expr"], data["xb"])
    reference = ParquetSource(tmp_path / "ref.parquet")
    result = MappingResult(store.path).transfer({"expr": "numeric", "cell": "numeric"}, reference=reference)
    m = store.to_scipy().toarray().astype(np.float64)
    np.testing.assert_allclose(result.values("expr"), m @ data["expr"].astype(np.float64), **TOL)
    np.testing.assert_allclose(result.values("cell"), m @ np.arange(N_REF), **TOL)


@pytest.mark.parametrize("kind", ["npy", "zarr-source", "parquet-list", "h5ad-X"])
def test_take_equals_fancy_indexing(data, tmp_path, kind):
    source = _write_sources(tmp_path, data["expr"], data["xb"])[kind]
    ids = np.array([0, 1, 49, 50, 51, 300, N_REF - 1])
    np.testing.assert_array_equal(source.take(ids), data["expr"][ids])
    with pytest.raises(ValueError, match="sorted unique"):
        source.take(np.array([5, 3]))


def test_pandas_and_anndata_outputs(store, data):
    import anndata as ad

    result = MappingResult(store.path).transfer(
        {
            "cell_type": ("categorical", data["cell_type"]),
            "score": ("numeric", data["score"]),
            "expr": ("numeric", data["expr"]),
        }
    )
    fields = ["cell_type", "score", "expr"]  # the module's store also holds fields of other tests
    frame = result.to_pandas(fields)
    assert list(frame.columns) == ["cell_type_pred", "cell_type_conf", "score_pred"]
    np.testing.assert_array_equal(frame["cell_type_pred"].astype(str), result.labels("cell_type"))
    assert frame.loc[10:19].shape[0] == 10
    query = ad.AnnData(X=np.zeros((N_QUERY, 12), np.float32))
    result.to_anndata(query, fields=fields, layers=("expr",))
    np.testing.assert_allclose(query.obs["score_pred"], result.values("score"))
    np.testing.assert_array_equal(query.layers["expr_pred"], result.values("expr"))
    assert query.obs["cell_type_pred"].dtype == "category"
    result.to_anndata(query, fields=fields)
    assert query.obsm["expr_pred"].shape == (N_QUERY, 12)
    with pytest.raises(ValueError, match="max_bytes"):
        result.to_anndata(query, fields=fields, max_bytes=1_000)
    with pytest.raises(ValueError, match="query AnnData has 3 rows"):
        result.to_anndata(ad.AnnData(X=np.zeros((3, 1))), fields=fields)


def test_summary_counts_and_quantiles(store, data):
    result = MappingResult(store.path).transfer({"cell_type": ("categorical", data["cell_type"])}, threshold=0.5)
    summary = result.summary()["cell_type"]
    labels, counts = np.unique(result.labels("cell_type"), return_counts=True)
    expected = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    assert summary["label_counts"] == {k: v for k, v in expected.items() if k != "unknown"}  # 5 types < top 10
    assert summary["other"] == 0
    assert summary["unknown"] == expected.get("unknown", 0)
    for q, value in summary["confidence_quantiles"].items():
        assert abs(value - np.quantile(result.confidence("cell_type"), float(q), method="inverted_cdf")) <= 1e-4


# --- bad input -------------------------------------------------------------------------


def test_missing_label_column(store, data):
    reference = ArraySource(data["xb"], {"cell_type": data["cell_type"]})
    with pytest.raises(ValueError, match=r"no column 'tissue'; columns: \['cell_type'\]"):
        MappingResult(store.path).transfer({"tissue": "categorical"}, reference=reference)


def test_label_column_with_nan(store, data):
    labels = data["cell_type"].copy()
    labels[[4, 9]] = np.nan
    with pytest.raises(ValueError, match=r"'cell_type' has 2 missing value\(s\), first at reference rows \[4, 9\]"):
        MappingResult(store.path).transfer({"cell_type": ("categorical", labels)})


def test_numeric_field_with_wrong_row_count(store, data, tmp_path):
    with pytest.raises(ValueError, match=f"'score' has {N_REF - 1} rows, the reference has {N_REF}"):
        MappingResult(store.path).transfer({"score": ("numeric", data["score"][:-1])})
    np.save(tmp_path / "short.npy", data["expr"][:10])
    with pytest.raises(ValueError, match=f"'expr' has 10 rows, the reference has {N_REF}"):
        MappingResult(store.path).transfer({"expr": ("numeric", str(tmp_path / "short.npy"))})


def test_numeric_with_nan_and_bad_kind(store, data):
    score = data["score"].copy()
    score[7] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf at reference rows \[7\]"):
        MappingResult(store.path).transfer({"score": ("numeric", score)})
    with pytest.raises(ValueError, match="unknown transfer kind for 'score' 'ordinal'"):
        MappingResult(store.path).transfer({"score": ("ordinal", score)})


@pytest.mark.parametrize("t", [0, -2, 1.5])
def test_diffusion_steps_below_one(store, data, t):
    with pytest.raises(ValueError, match=r"t: expected an integer >= 1"):
        MappingResult(store.path).transfer({"score": ("numeric", data["score"])}, t=t)


def test_diffusion_and_symmetrize_need_self_mapping(store, data):
    with pytest.raises(ValueError, match="diffusion t=2 needs a self-mapping store"):
        MappingResult(store.path).transfer({"score": ("numeric", data["score"])}, t=2)
    with pytest.raises(ValueError, match="symmetrize='max' needs a self-mapping store"):
        MappingResult(store.path).transfer({"score": ("numeric", data["score"])}, symmetrize="max")


def test_threshold_out_of_range(store, data):
    with pytest.raises(ValueError, match=r"threshold: expected a confidence in \[0, 1\], got 1.5"):
        MappingResult(store.path).transfer({"cell_type": ("categorical", data["cell_type"])}, threshold=1.5)


def test_incomplete_store_is_refused(data, tmp_path):
    store = build_store(tmp_path / "half.zarr", data["xq"], data["xb"], K, 48, commit=False)
    with pytest.raises(IncompleteStoreError, match=r"units are not committed"):
        MappingResult(store.path).transfer({"score": ("numeric", data["score"])})
    assert MappingResult(store.path).fields() == []


def test_umap_kernel_refused_for_cross_mapping(data):
    import raymap

    with pytest.raises(ValueError, match="kernel 'umap' is defined for self-mapping only"):
        raymap.map(data["xq"], data["xb"], "never-written.zarr", kernel="umap")
