"""Demo data: deterministic, independent of chunking, with the documented structure."""

from __future__ import annotations

import h5py
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from raymap import datasets
from raymap.sources import open_source


def test_atlas_same_data_for_any_chunking(atlas, tmp_path):
    other = datasets.cell_atlas(tmp_path, n_ref=6_000, n_query=2_000, chunk_rows=4_096, formats=("parquet",))
    a = pq.read_table(atlas.reference["parquet"])
    b = pq.read_table(other.reference["parquet"])
    assert a.equals(b)
    assert pq.ParquetFile(atlas.reference["parquet"]).metadata.num_row_groups == 4  # 1,500-row groups


def test_atlas_structure(atlas):
    ref = pq.read_table(atlas.reference["parquet"]).to_pandas()
    qry = pq.read_table(atlas.query["parquet"]).to_pandas()
    assert set(atlas.query_only_types).isdisjoint(ref["cell_type"])
    assert set(atlas.ref_only_types).isdisjoint(qry["cell_type"])
    assert set(atlas.query_only_types) <= set(qry["cell_type"])
    counts = ref["cell_type"].value_counts()
    assert counts.max() > 3 * counts.min()  # unequal type sizes
    assert ref.groupby("cell_type")["lineage"].nunique().max() == 1  # types nest in lineages
    assert ref["emb"].iloc[0].dtype == np.float32 and len(ref["emb"].iloc[0]) == 50
    # the batch shift: query cells of a type sit off the reference cells of that type
    r = open_source(atlas.reference["parquet"]).read(0, 6_000).mean(0)
    q = open_source(atlas.query["parquet"]).read(0, 2_000).mean(0)
    assert np.linalg.norm(r - q) > 0.5


def test_image_collection_schema_and_images(images):
    table = ds.dataset(images.parquet, partitioning="hive").to_table()
    expected = {
        "uuid",
        "emb",
        "kingdom",
        "phylum",
        "class",
        "order",
        "family",
        "genus",
        "species",
        "source_dataset",
        "scientific_name",
        "common_name",
        "publisher",
        "basisOfRecord",
        "img_type",
        "identifier",
    }
    assert expected == set(table.column_names)
    assert table.num_rows == 3_000 and len(set(table.column("uuid").to_pylist())) == 3_000
    emb = open_source(images.parquet).read(0, 3_000)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    with h5py.File(images.images_h5) as h5:
        assert len(h5) == 300
        first = next(iter(h5))
        assert bytes(h5[first][:8]) == b"\x89PNG\r\n\x1a\n"
    assert len(list(images.images_dir.glob("*.png"))) == 30
