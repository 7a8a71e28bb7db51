"""Every EmbeddingSource kind reads the same rows, in the same order, with the same fingerprint."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

from raymap.datasets import embedding_array
from raymap.sources import (
    AnnDataSource,
    ArraySource,
    NonFiniteRowsError,
    NpySource,
    ParquetSource,
    ZarrSource,
    open_source,
)


@pytest.fixture(scope="module")
def reference_rows(atlas) -> np.ndarray:
    return ParquetSource(atlas.reference["parquet"]).read(0, 6_000)


@pytest.fixture(scope="module")
def all_kinds(atlas, reference_rows, tmp_path_factory):
    d = tmp_path_factory.mktemp("kinds")
    np.save(d / "ref.npy", reference_rows)
    ad_zarr = d / "ref_ad.zarr"
    ad.AnnData(obsm={"X_pca": reference_rows}, shape=(len(reference_rows), 0)).write_zarr(ad_zarr)
    return {
        "parquet": open_source(atlas.reference["parquet"]),
        "zarr": open_source(atlas.reference["zarr"]),
        "h5ad": open_source(atlas.reference["h5ad"]),
        "anndata-zarr": open_source(ad_zarr),
        "npy": open_source(d / "ref.npy"),
        "array": open_source(reference_rows),
    }


@pytest.mark.parametrize("kind", ["parquet", "zarr", "h5ad", "anndata-zarr", "npy", "array"])
def test_every_kind_reads_same_rows_in_order(all_kinds, reference_rows, kind):
    src = all_kinds[kind]
    expected_type = {
        "parquet": ParquetSource,
        "zarr": ZarrSource,
        "h5ad": AnnDataSource,
        "anndata-zarr": AnnDataSource,
        "npy": NpySource,
        "array": ArraySource,
    }[kind]
    assert isinstance(src, expected_type)
    assert (src.n_rows, src.dim, src.dtype) == (6_000, 50, np.float32)
    # odd batch size: batches straddle chunk / row-group boundaries
    starts, blocks = zip(*src.iter_batches(batch_rows=1_111), strict=True)
    assert list(starts) == list(range(0, 6_000, 1_111))
    np.testing.assert_array_equal(np.concatenate(blocks), reference_rows)
    assert src.fingerprint() == all_kinds["array"].fingerprint()


def test_fingerprint_changes_with_content(reference_rows):
    changed = reference_rows.copy()
    changed[-1, 0] += 1
    assert ArraySource(changed).fingerprint() != ArraySource(reference_rows).fingerprint()
    assert ArraySource(reference_rows[:-1]).fingerprint() != ArraySource(reference_rows).fingerprint()


def test_batches_follow_memory_budget(atlas):
    src = open_source(atlas.reference["parquet"])
    # 1.5 chunks of rows fit: batches are whole chunks (1,500 rows)
    assert src.batch_rows_for(1_500 * 50 * 8 * 1.5) == 1_500
    assert src.batch_rows_for(100 * 50 * 8) == 100  # smaller than a chunk: fewer rows
    assert max(len(b) for _, b in src.iter_batches("2MiB")) <= 2 * 2**20 // (8 * 50)


def test_metadata_columns_agree(atlas):
    pq_src, h5 = open_source(atlas.reference["parquet"]), open_source(atlas.reference["h5ad"])
    assert set(h5.metadata_columns()) <= set(pq_src.metadata_columns())
    np.testing.assert_array_equal(pq_src.read_column("cell_type"), h5.read_column("cell_type").astype(str))
    with pytest.raises(KeyError, match="no metadata column 'nope'"):
        pq_src.read_column("nope")


def test_pushdown_skips_partitions(images):
    full = open_source(images.parquet)
    one = open_source(images.parquet, filter={"family": "Family01", "source_dataset": ["inat21", "eol"]})
    assert set(one.read_column("family")) == {"Family01"}
    assert set(one.read_column("source_dataset")) <= {"inat21", "eol"}
    # only files under the matching partitions are planned, i.e. read at all
    assert one.pieces_read and all("family=Family01" in p for p in one.pieces_read)
    assert not any("source_dataset=bioscan" in p for p in one.pieces_read)
    assert len(one.pieces_read) < len(full.pieces_read) / 5
    # a non-partition column filter prunes by statistics and filters rows
    sp = open_source(images.parquet, filter={"species": "species003"})
    assert set(sp.read_column("species")) == {"species003"} and sp.n_rows < full.n_rows


def test_filtered_rows_match_a_plain_pyarrow_scan(images):
    import pyarrow.dataset as ds

    src = open_source(images.parquet, filter={"img_type": "specimen"})
    table = ds.dataset(images.parquet, partitioning="hive").to_table(filter=ds.field("img_type") == "specimen")
    assert src.n_rows == table.num_rows
    assert sorted(src.read_column("uuid")) == sorted(table.column("uuid").to_pylist())


def test_to_ray_dataset_streams_ordered_rows(ray_cluster, atlas, reference_rows):
    src = open_source(atlas.reference["zarr"])
    rows = src.to_ray_dataset(memory_budget=1_500 * 50 * 8).take_all()
    ids = np.array([r["row_id"] for r in rows])
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], np.arange(6_000))
    np.testing.assert_array_equal(np.stack([r["emb"] for r in rows])[order], reference_rows)


# --- bad input -----------------------------------------------------------------------


def _write(path, table):
    pq.write_table(table, path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        open_source(tmp_path / "nope.parquet")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="bad.parquet"):
        open_source(bad)


def test_no_embedding_column(tmp_path):
    p = _write(tmp_path / "x.parquet", pa.table({"a": [1, 2]}))
    with pytest.raises(ValueError, match="no embedding column 'emb'.*columns: \\['a'\\]"):
        open_source(p)


def test_ragged_embeddings(tmp_path):
    p = _write(tmp_path / "r.parquet", pa.table({"emb": pa.array([[1.0, 2.0], [1.0]], pa.list_(pa.float32()))}))
    with pytest.raises(ValueError, match="ragged embeddings: row 1"):
        open_source(p).read(0, 2)


def test_non_numeric_embeddings(tmp_path):
    p = _write(tmp_path / "s.parquet", pa.table({"emb": pa.array([["a"], ["b"]])}))
    with pytest.raises(ValueError, match="must be numeric"):
        open_source(p)


def test_nan_rows_reported_with_ids(tmp_path):
    x = np.ones((100, 4), np.float32)
    x[[7, 42], 1] = np.nan
    x[50, 0] = np.inf
    p = _write(tmp_path / "n.parquet", pa.table({"emb": embedding_array(x)}))
    src = open_source(p)
    with pytest.raises(NonFiniteRowsError, match=r"3 row\(s\) hold NaN or inf; first row ids: \[7, 42, 50\]"):
        src.check_finite()
    with pytest.raises(NonFiniteRowsError, match="first row ids: \\[42\\]"):
        src.read(40, 45)


def test_empty_after_filter(images):
    with pytest.raises(ValueError, match="no rows match filter"):
        open_source(images.parquet, filter={"family": "NoSuchFamily"})


def test_filter_unknown_column_and_wrong_type(images):
    with pytest.raises(ValueError, match="unknown column 'colour'"):
        open_source(images.parquet, filter={"colour": "red"})
    with pytest.raises(ValueError, match="value 3 for column 'genus' does not fit its type string"):
        open_source(images.parquet, filter={"genus": 3})


def test_bad_anndata_rep_and_zarr_group(atlas, tmp_path):
    with pytest.raises(ValueError, match="no obsm\\['X_umap'\\]; obsm keys: \\['X_pca'\\]"):
        open_source(atlas.reference["h5ad"], use_rep="X_umap")
    g = zarr.open_group(tmp_path / "g.zarr", mode="w")
    g.create_array("a", shape=(3, 2), dtype="f4")
    with pytest.raises(ValueError, match="name the embedding array"):
        ZarrSource(tmp_path / "g.zarr")
    with pytest.raises(ValueError, match="must be 2-D"):
        ArraySource(np.zeros(5))
