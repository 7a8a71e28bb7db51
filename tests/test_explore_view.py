"""Level of detail (bounded output at any n, zoom) and images on demand (identifier, HDF5, placeholder)."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pytest

from raymap.explore.images import ImageFetcher, ImageUnavailableError, placeholder
from raymap.explore.lod import STRATA_GRID, level_of_detail, water_fill_cap


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)).astype(np.float32) * np.float32([3.0, 1.0])


@pytest.mark.parametrize("n", [10, 10_000, 1_000_000])
def test_lod_output_is_bounded_whatever_n(n):
    xy = _cloud(n)
    lod = level_of_detail(xy, bins=64, max_points=2_000, batch_rows=100_000)
    assert lod.density.shape == (64, 64)
    assert lod.density.sum() == lod.n_in_view == n
    assert len(lod.points) <= 2_000
    assert len(np.unique(lod.points)) == len(lod.points) and (np.diff(lod.points) > 0).all()
    assert lod.complete == (n <= 2_000)
    if n > 2_000:
        assert len(lod.points) > 1_500  # the budget is used, not starved by the strata


def test_lod_density_streams_and_sample_is_seeded():
    xy = _cloud(50_000)
    one = level_of_detail(xy, bins=32, max_points=500, batch_rows=50_000)
    many = level_of_detail(xy, bins=32, max_points=500, batch_rows=7_000)
    assert np.array_equal(one.density, many.density)
    assert np.array_equal(one.points, level_of_detail(xy, bins=32, max_points=500, batch_rows=50_000).points)
    assert not np.array_equal(one.points, level_of_detail(xy, bins=32, max_points=500, seed=1).points)
    expected, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=32, range=[one.y_range, one.x_range])
    assert np.array_equal(one.density, expected)


def test_zoom_renders_a_region_at_full_detail_with_the_same_bounds():
    xy = _cloud(200_000)
    overview = level_of_detail(xy, bins=64, max_points=1_000)
    region = ((0.0, 0.5), (0.0, 0.1))
    zoomed = level_of_detail(xy, *region, bins=64, max_points=1_000)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= 0.5) & (xy[:, 1] >= 0) & (xy[:, 1] <= 0.1)
    assert zoomed.density.shape == overview.density.shape
    assert zoomed.n_in_view == zoomed.density.sum() == inside.sum()
    assert inside.sum() <= 1_000 and zoomed.complete
    assert np.array_equal(zoomed.points, np.flatnonzero(inside))
    wide = level_of_detail(xy, (-3.0, 3.0), (-1.0, 1.0), bins=64, max_points=1_000)
    assert len(wide.points) <= 1_000 and not wide.complete
    assert inside[overview.points].sum() < inside.sum()  # the overview did not show them all
    with pytest.raises(ValueError, match="x_range: expected"):
        level_of_detail(xy, (1.0, 0.0), (0.0, 1.0))


def test_lod_keeps_small_clusters_and_outliers_visible():
    xy = np.concatenate([_cloud(100_000), [[40.0, 40.0], [41.0, 40.0], [-40.0, -40.0]]]).astype(np.float32)
    labels = np.zeros(len(xy), dtype=np.int32)
    labels[5:10] = 1  # a five-point cluster inside the mass
    lod = level_of_detail(xy, bins=64, max_points=1_000, labels=labels)
    assert set(range(100_000, 100_003)) <= set(lod.points.tolist())  # outliers in sparse cells
    assert set(range(5, 10)) <= set(lod.points.tolist())  # the small cluster
    assert len(lod.points) <= 1_000


def test_water_fill_cap():
    counts = np.array([1_000, 10, 3, 0])
    assert water_fill_cap(counts, 10_000) == 1_000
    cap = water_fill_cap(counts, 100)
    assert np.minimum(counts, cap).sum() <= 100 < np.minimum(counts, cap + 1).sum()
    assert STRATA_GRID >= 4


def test_images_identifier_then_hdf5_then_placeholder(images, tmp_path):
    table = ds.dataset(images.parquet, format="parquet", partitioning="hive").to_table(columns=["uuid", "identifier"])
    rows = table.to_pylist()
    with_file = next(r for r in rows if r["identifier"].startswith("file://"))
    h5_only = [r for r in rows if not r["identifier"].startswith("file://")]
    fetcher = ImageFetcher(images.images_h5, timeout_s=2.0, cache_size=4)

    got = fetcher.fetch(with_file["identifier"], with_file["uuid"])
    assert got.source == "identifier" and got.ok and got.errors == () and got.image.mode == "RGB"

    import h5py

    with h5py.File(images.images_h5) as h5:
        stored = set(h5.keys())
    fallback = next(r for r in h5_only if r["uuid"] in stored)
    got = fetcher.fetch(fallback["identifier"], fallback["uuid"])
    assert got.source == "hdf5" and got.ok and "images.invalid" in got.errors[0]

    missing = next(r for r in h5_only if r["uuid"] not in stored)
    got = fetcher.fetch(missing["identifier"], missing["uuid"])
    assert got.source == "placeholder" and not got.ok and got.image.size == placeholder().size
    assert any("not in" in e for e in got.errors)
    with pytest.raises(ImageUnavailableError, match=missing["uuid"]):
        fetcher.fetch(missing["identifier"], missing["uuid"], strict=True)

    broken = tmp_path / "broken.png"
    broken.write_text("this is not an image")
    got = ImageFetcher().fetch(broken.as_uri())
    assert got.source == "placeholder" and "not a readable image" in got.errors[0]
    with pytest.raises(ImageUnavailableError, match="not a readable image"):
        ImageFetcher().fetch(broken.as_uri(), strict=True)
    assert "unsupported scheme 'ftp'" in ImageFetcher().fetch("ftp://host/x.png").errors[0]
    assert ImageFetcher().fetch(None).source == "placeholder"


def test_image_cache_is_a_bounded_lru(images):
    fetcher = ImageFetcher(images.images_h5, cache_size=2)
    first = fetcher.fetch(None, "no-such-uuid-1")
    assert fetcher.fetch(None, "no-such-uuid-1") is first
    second = fetcher.fetch(None, "no-such-uuid-2")
    fetcher.fetch(None, "no-such-uuid-1")  # touch: uuid-2 is now the oldest
    fetcher.fetch(None, "no-such-uuid-3")  # evicts uuid-2
    assert fetcher.fetch(None, "no-such-uuid-1") is first
    assert fetcher.fetch(None, "no-such-uuid-2") is not second
    with pytest.raises(FileNotFoundError, match="image store not found"):
        ImageFetcher("/nonexistent/images.h5")
