"""Exploration filter (pushdown, projection, read accounting) and seeded streamed samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from raymap.explore.filter import open_filtered, parse_filter_text, read_metadata
from raymap.explore.sample import PLAN_BLOCK, gather, iter_rows, stratified_rows, uniform_rows


def _table(path: Path) -> pa.Table:
    return ds.dataset(path, format="parquet", partitioning="hive").to_table()


def test_pushdown_never_opens_non_matching_partitions(images, tmp_path):
    """Files of other partitions are overwritten with garbage: a filtered scan still works, a full one fails."""
    data = tmp_path / "embeddings"
    shutil.copytree(images.parquet, data)
    corrupted = [f for f in data.rglob("*.parquet") if "source_dataset=bioscan" not in f.parts[-3]]
    assert corrupted
    for f in corrupted:
        f.write_bytes(b"not parquet at all")
    filtered = open_filtered(data, filter={"source_dataset": "bioscan"})
    stats = filtered.stats
    assert stats is not None
    assert all("source_dataset=bioscan" in f for f in filtered.source.pieces_read)
    assert stats.files_read == len(filtered.source.pieces_read) < stats.files_total
    assert stats.bytes_read < stats.bytes_total
    meta = read_metadata(filtered.source, ["uuid", "source_dataset"])
    assert set(meta.column("source_dataset").to_pylist()) == {"bioscan"}
    expected = _table(images.parquet).filter(ds.field("source_dataset") == "bioscan")
    assert meta.num_rows == stats.rows_matched == expected.num_rows
    assert sorted(meta.column("uuid").to_pylist()) == sorted(expected.column("uuid").to_pylist())
    assert gather(filtered.source, np.arange(filtered.source.n_rows), 500).shape == (expected.num_rows, images.dim)
    with pytest.raises((ValueError, OSError)):
        open_filtered(data)


def test_projection_and_row_filter_are_accounted(images):
    table = _table(images.parquet)
    photo = open_filtered(images.parquet, filter={"img_type": "photo"}, columns=["species"])
    assert photo.source.n_rows == photo.stats.rows_matched == table.filter(ds.field("img_type") == "photo").num_rows
    assert photo.stats.rows_read >= photo.stats.rows_matched
    assert set(read_metadata(photo.source, ["img_type"]).column("img_type").to_pylist()) == {"photo"}
    narrow = open_filtered(images.parquet, columns=["species"]).stats
    wide = open_filtered(images.parquet).stats
    assert narrow.bytes_read < wide.bytes_read <= wide.bytes_total
    assert narrow.files_read == wide.files_read == wide.files_total


def test_read_metadata_selects_rows_in_order(images):
    filtered = open_filtered(images.parquet, filter={"family": ["Family01", "Family03"]})
    everything = read_metadata(filtered.source, ["uuid", "family"])
    rows = np.array([0, 3, 4, 50, filtered.source.n_rows - 1])
    picked = read_metadata(filtered.source, ["uuid"], rows)
    assert picked.column("row_id").to_pylist() == rows.tolist()
    assert picked.column("uuid").to_pylist() == everything.column("uuid").take(pa.array(rows)).to_pylist()
    assert read_metadata(filtered.source, [], rows).column_names == ["row_id"]


def test_bad_filters_and_columns_name_the_problem(images, atlas):
    with pytest.raises(ValueError, match="unknown column 'genuss'"):
        open_filtered(images.parquet, filter={"genuss": "Genus001"})
    with pytest.raises(ValueError, match="does not fit its type string"):
        open_filtered(images.parquet, filter={"family": 5})
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['colour'\]"):
        open_filtered(images.parquet, columns=["colour"])
    with pytest.raises(ValueError, match="no rows match"):
        open_filtered(images.parquet, filter={"family": "NoSuchFamily"})
    with pytest.raises(ValueError, match="filters need a Parquet dataset"):
        open_filtered(atlas.reference["zarr"], filter={"cell_type": "type_01"})
    ref = atlas.reference["parquet"]
    assert parse_filter_text(["score=1.5", "cell_type=type_01,type_02"], ref) == {
        "score": 1.5,
        "cell_type": ["type_01", "type_02"],
    }
    with pytest.raises(ValueError, match="'abc' for column 'score' is not a float"):
        parse_filter_text(["score=abc"], ref)
    with pytest.raises(ValueError, match="unknown column 'scor'"):
        parse_filter_text(["scor=1"], ref)
    with pytest.raises(ValueError, match="expected column=value"):
        parse_filter_text(["score"], ref)


def test_uniform_rows_seeded_uniform_and_planned():
    a = uniform_rows(1_000_000, 5_000, seed=3)
    assert len(a) == len(np.unique(a)) == 5_000 and (np.diff(a) > 0).all()
    assert np.array_equal(a, uniform_rows(1_000_000, 5_000, seed=3))
    assert not np.array_equal(a, uniform_rows(1_000_000, 5_000, seed=4))
    per_decile = np.bincount(a // 100_000, minlength=10)
    assert per_decile.min() > 400 and per_decile.max() < 600  # expected 500 each, sd ~21
    assert np.array_equal(uniform_rows(10, 50), np.arange(10))
    huge = uniform_rows(10**10, 1_000, seed=0)  # sparse: no O(n) array is built
    assert len(huge) == len(np.unique(huge)) == 1_000 and huge[-1] < 10**10
    dense = uniform_rows(300_000, 200_000, seed=0)  # dense: planned per block
    assert len(np.unique(dense)) == 200_000 and np.array_equal(dense, uniform_rows(300_000, 200_000, seed=0))
    per_block = np.bincount(dense // PLAN_BLOCK)[:-1] / PLAN_BLOCK
    assert np.allclose(per_block, 2 / 3, atol=0.02)
    with pytest.raises(ValueError, match="sample size"):
        uniform_rows(10, 0)


def _column_batches(values: list, batch: int):
    arr = pa.array(values)
    return lambda: ((s, arr.slice(s, batch)) for s in range(0, len(values), batch))


def test_stratified_rows_cap_per_value_and_batching_invariant():
    rng = np.random.default_rng(0)
    values = rng.choice(["a", "b", "c", None], size=5_000, p=[0.7, 0.25, 0.045, 0.005]).tolist()
    values += ["rare"] * 3
    rows = stratified_rows(_column_batches(values, 5_007), cap=100, seed=1)
    picked = np.asarray(values, dtype=object)[rows]
    counts = {v: int(sum(1 for p in picked if p == v)) for v in ("a", "b", "c", None, "rare")}
    assert counts["a"] == counts["b"] == 100
    assert counts["c"] == min(100, values.count("c"))
    assert counts[None] == values.count(None)  # nulls are their own stratum
    assert counts["rare"] == 3
    assert (np.diff(rows) > 0).all()
    for batch in (1, 333, 1_024):
        assert np.array_equal(rows, stratified_rows(_column_batches(values, batch), cap=100, seed=1))
    assert not np.array_equal(rows, stratified_rows(_column_batches(values, 5_007), cap=100, seed=2))
    with pytest.raises(ValueError, match="cap per stratum"):
        stratified_rows(_column_batches(values, 100), cap=0)


def test_gather_and_iter_rows_match_a_full_read(images):
    source = open_filtered(images.parquet, filter={"source_dataset": ["eol", "inat21"]}).source
    full = source.read(0, source.n_rows)
    rows = uniform_rows(source.n_rows, 300, seed=0)
    assert np.array_equal(gather(source, rows, 128), full[rows])
    offsets = [off for off, _ in iter_rows(source, rows, 128)]
    assert offsets == sorted(offsets) and offsets[0] == 0
    with pytest.raises(IndexError):
        gather(source, np.array([source.n_rows]), 128)


def test_stratified_rows_on_integer_and_partition_columns(images):
    ints = pa.array(np.repeat(np.arange(5, dtype=np.int32), [1, 10, 100, 1_000, 3]))
    rows = stratified_rows(lambda: iter([(0, ints)]), cap=50)
    assert np.bincount(ints.to_numpy()[rows]).tolist() == [1, 10, 50, 50, 3]
    source = open_filtered(images.parquet).source
    by_family = stratified_rows(lambda: ((s, t.column("family")) for s, t in source.iter_tables(["family"])), cap=40)
    families = read_metadata(source, ["family"], by_family).column("family").to_pandas()
    assert families.value_counts().max() == 40
