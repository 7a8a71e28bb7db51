"""Pure algorithms: top-k merge, self-drop, distances, kernels, streamed statistics, pool sizing."""

from __future__ import annotations

import numpy as np
import pytest

from raymap.kernels import KERNELS, bandwidth, merge_stats, parse_kernel, unit_stats, weigh
from raymap.topk import drop_self, merge_topk, sort_rows, to_distances


def test_merge_topk_equals_global_sort_with_id_ties():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 5, (50, 40)).astype(np.float32)  # many ties
    ids = np.tile(np.arange(40), (50, 1))
    parts = [(d[:, s : s + 10], ids[:, s : s + 10]) for s in range(0, 40, 10)]
    md, mi = merge_topk([p[0] for p in parts], [p[1] for p in parts], 7)
    for row in range(50):
        expected = sorted(zip(d[row], ids[row], strict=True))[:7]
        assert list(zip(md[row], mi[row], strict=True)) == expected


def test_missing_results_sort_last():
    _d, i = sort_rows(np.array([[np.inf, 1.0, 0.5]], np.float32), np.array([[-1, 4, 9]]))
    assert i.tolist() == [[9, 4, -1]]


def test_drop_self_removes_own_id_or_the_last():
    ids = np.array([[5, 1, 2], [3, 4, 6], [9, 8, 7]])
    d = np.arange(9, dtype=np.float32).reshape(3, 3)
    dd, ii = drop_self(d, ids, np.array([5, 4, 0]))
    assert ii.tolist() == [[1, 2], [3, 6], [9, 8]]
    assert dd.tolist() == [[1, 2], [3, 5], [6, 7]]


def test_distances_are_true_distances():
    ids = np.array([[0, 1, -1]])
    np.testing.assert_allclose(to_distances(np.array([[4.0, 9.0, 1e38]], np.float32), ids, "l2"), [[2, 3, np.inf]])
    np.testing.assert_allclose(to_distances(np.array([[1.0, 0.25, 0]], np.float32), ids, "cosine"), [[0, 0.75, np.inf]])


def test_streamed_stats_equal_numpy():
    rng = np.random.default_rng(1)
    d = rng.gamma(2, 1, (1000, 30))
    d[3, 4] = np.inf
    parts = [unit_stats(d[s : s + 97]) for s in range(0, 1000, 97)]
    n, mean, m2 = merge_stats(parts[::-1])
    finite = d[np.isfinite(d)]
    assert n == finite.size
    assert mean == pytest.approx(finite.mean(), rel=1e-12)
    assert np.sqrt(m2 / n) == pytest.approx(finite.std(), rel=1e-10)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_rows_sum_to_one(name):
    rng = np.random.default_rng(2)
    d = np.sort(rng.gamma(2, 1, (200, 15)), axis=1).astype(np.float32)
    kern = parse_kernel(name)
    w, empty = weigh(kern, d, bandwidth(kern, unit_stats(d)))
    assert not empty.any()
    np.testing.assert_allclose(w.sum(1), 1, rtol=1e-5)
    assert (np.diff(w, axis=1) <= 1e-7).all()  # nearer neighbours never weigh less


def test_gauss_matches_cellmapper_formula():
    d = np.array([[1.0, 2.0, 3.0]])
    sigma = d.mean()
    raw = np.exp(-(d**2) / (2 * sigma**2))
    w, _ = weigh(KERNELS["gauss"], d, bandwidth(KERNELS["gauss"], unit_stats(d)))
    np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-6)


def test_zero_rows_are_flagged_not_first_label():
    d = np.array([[1.0, 2.0], [np.inf, np.inf], [1e4, 2e4]], np.float32)
    w, empty = weigh(KERNELS["gauss"], d, 1.0)
    assert empty.tolist() == [False, True, True]
    assert (w[1:] == 0).all()


def test_unknown_kernel():
    with pytest.raises(ValueError, match="unknown kernel 'gaus'; choose one of"):
        parse_kernel("gaus")


def test_pool_plan_replicas_vs_fan_out():
    from raymap.index.build import IndexManifest, ShardInfo
    from raymap.pool import plan_pool

    shards = [ShardInfo(f"s{i}", i * 10, i * 10 + 10) for i in range(4)]
    m = IndexManifest("Flat", "l2", 8, 40, "fp", shards)
    whole = plan_pool(m, [100] * 4, memory_budget=1_000, total_cpus=16, node_cpus=16, total_gpus=0)
    assert whole.groups == [[0, 1, 2, 3]] and whole.replicas == 2 and whole.threads == 8 and not whole.fan_out
    split = plan_pool(m, [100] * 4, memory_budget=250, total_cpus=2, node_cpus=2, total_gpus=0)
    assert split.groups == [[0, 1], [2, 3]] and split.replicas == 1 and split.fan_out
    crowded = plan_pool(m, [100] * 4, memory_budget=100, total_cpus=2, node_cpus=2, total_gpus=0)
    assert len(crowded.groups) == 4 and crowded.num_cpus == 0.5 and crowded.threads == 1  # all fit on 2 CPUs
    gpu = plan_pool(m, [100] * 4, memory_budget=1_000, total_cpus=8, node_cpus=8, total_gpus=2)
    assert gpu.num_gpus == 1 and gpu.replicas == 2
    small = plan_pool(m, [100] * 4, memory_budget=1_000, total_cpus=2, node_cpus=2, total_gpus=0)
    assert small.replicas == 1 and small.threads == 2
