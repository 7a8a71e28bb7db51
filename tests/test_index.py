"""Index build: exactness of Flat shards, auto rules, nprobe tuning, reuse and refusal."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from raymap.index import IndexSpec, build_index, load_manifest, load_searcher, resolve_factory
from raymap.sources import ArraySource, NonFiniteRowsError, open_source
from raymap.topk import merge_topk


def _search_all(manifest, xq, k, backend="faiss-cpu"):
    parts = [
        load_searcher(manifest.shard_path(i), s.row_start, manifest.metric, manifest.nprobe, backend).search(xq, k)
        for i, s in enumerate(manifest.shards)
    ]
    return merge_topk([p[0] for p in parts], [p[1] for p in parts], k)


@pytest.mark.parametrize("backend", ["faiss-cpu", "torch-exact"])
@pytest.mark.parametrize("n_shards", [1, 3])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_flat_shards_are_exact(atlas, tmp_path, n_shards, metric, backend):
    """Both exact backends (torch's GEMM + top-k runs on CPU here, on CUDA where present) agree with brute force."""
    if backend == "torch-exact":
        pytest.importorskip("torch")
    ref = open_source(atlas.reference["parquet"])
    m = build_index(ref, tmp_path, IndexSpec("Flat", metric=metric), n_shards=n_shards, memory_budget="1MiB")
    assert next(s.row_start for s in m.shards) == 0 and m.shards[-1].row_stop == 6_000
    xb = ref.read(0, 6_000)
    xq = open_source(atlas.query["parquet"]).read(0, 200)
    d, i = _search_all(m, xq, 10, backend)
    if metric == "l2":
        exact = np.sqrt(((xq[:, None, :] - xb[None]) ** 2).sum(-1))
    else:
        nq, nb = xq / np.linalg.norm(xq, axis=1, keepdims=True), xb / np.linalg.norm(xb, axis=1, keepdims=True)
        exact = 1 - nq @ nb.T
    order = np.argsort(exact, axis=1)[:, :10]
    np.testing.assert_allclose(d, np.take_along_axis(exact, order, 1), rtol=1e-4, atol=1e-5)
    assert (i == order).mean() > 0.999


def test_auto_rules():
    assert resolve_factory("auto", 150_000, 50) == "Flat"
    assert resolve_factory("auto", 1_000_000, 50) == "IVF4096,Flat"
    assert resolve_factory("auto", 1_000_000_000, 50).startswith("IVF") and "PQ25x8" in resolve_factory(
        "auto", 1_000_000_000, 50
    )
    with pytest.raises(ValueError, match="invalid faiss factory string 'IVFxx'"):
        resolve_factory("IVFxx", 10, 8)


def test_ivf_nprobe_tuned_to_target_recall(atlas, tmp_path):
    ref, qry = open_source(atlas.reference["parquet"]), open_source(atlas.query["parquet"])
    m = build_index(ref, tmp_path, IndexSpec("IVF64,Flat"), n_shards=2, k=30, tuning_source=qry)
    assert m.recall >= 0.95 and m.recall_k == 30 and 1 <= m.nprobe <= 64
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["recall"] == m.recall and saved["nprobe"] == m.nprobe


def test_reuse_and_refusal(atlas, tmp_path):
    ref = open_source(atlas.reference["parquet"])
    m = build_index(ref, tmp_path, IndexSpec("Flat"), n_shards=2)
    mtime = (tmp_path / "shard_0000.faiss").stat().st_mtime_ns
    again = build_index(ref, tmp_path, IndexSpec("Flat"), n_shards=2)
    assert again == m and (tmp_path / "shard_0000.faiss").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="different index is saved there.*n_shards: saved 2, wanted 3"):
        build_index(ref, tmp_path, IndexSpec("Flat"), n_shards=3)
    build_index(ref, tmp_path, IndexSpec("Flat"), n_shards=3, overwrite=True)
    assert len(load_manifest(tmp_path).shards) == 3


def test_corrupt_or_incomplete_index(atlas, tmp_path):
    ref = open_source(atlas.reference["parquet"])
    build_index(ref, tmp_path, IndexSpec("Flat"), n_shards=2)
    (tmp_path / "shard_0001.faiss").unlink()
    with pytest.raises(FileNotFoundError, match="shard_0001.faiss listed in the manifest is missing"):
        build_index(ref, tmp_path, IndexSpec("Flat"), n_shards=2)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt index manifest"):
        load_manifest(tmp_path)


def test_nan_reference_fails_before_manifest(tmp_path):
    x = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    x[321, 2] = np.nan
    with pytest.raises(NonFiniteRowsError, match="321"):
        build_index(ArraySource(x), tmp_path, IndexSpec("Flat"))
    assert not (tmp_path / "manifest.json").exists()


def test_bad_spec():
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        IndexSpec(metric="manhattan")
    with pytest.raises(ValueError, match="unknown index backend 'cuda'"):
        IndexSpec(backend="cuda")
    assert IndexSpec(metric="cosine").faiss_metric == faiss.METRIC_INNER_PRODUCT
