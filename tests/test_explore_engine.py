"""The explore() facade end to end: points table, LOD, composition, neighbours, export, images, CLI and Ray steps."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from raymap.cli import main
from raymap.explore import explore
from raymap.explore.tasks import run_step


@pytest.fixture(scope="module")
def explored(images):
    return explore(
        images.parquet,
        filter={"family": ["Family00", "Family01", "Family02"]},
        sample=400,
        cluster=3,
        project="pca",
        images=images.images_h5,
        max_points=100,
        bins=32,
    )


def test_explore_builds_points_and_a_bounded_view(explored):
    points = explored.points
    assert len(points) == 400 and points["row_id"].is_monotonic_increasing
    assert {"row_id", "uuid", "family", "identifier", "cluster", "x", "y"} <= set(points.columns)
    assert set(points["family"]) <= {"Family00", "Family01", "Family02"}
    assert points["cluster"].between(0, 2).all() and np.isfinite(points[["x", "y"]].to_numpy()).all()
    lod = explored.lod
    assert lod.density.shape == (32, 32) and lod.density.sum() == 400 and len(lod.points) <= 100
    assert explored.backends == {"cluster": "sklearn", "project": "pca:sklearn"}
    summary = explored.summary()
    assert summary["points"] == 400 and summary["read"]["files_read"] < summary["read"]["files_total"]
    assert set(summary["seconds"]) == {"filter", "sample", "cluster", "project", "lod"}
    x0, x1 = float(points["x"].min()), float(points["x"].median())
    zoomed = explored.zoom((x0, x1), lod.y_range)
    assert zoomed.density.shape == (32, 32) and zoomed.n_in_view == (points["x"] <= x1).sum()
    comp = explored.composition("genus", top=2)
    assert set(comp["cluster"]) == {0, 1, 2} and comp["share"].between(0, 1).all()


def test_neighbors_match_brute_force(explored, tmp_path):
    source = explored.source
    full = source.read(0, source.n_rows)
    positions = [0, 7]
    found = explored.neighbors(positions, k=5, index_dir=tmp_path / "index")
    for pos in positions:
        row = int(explored.points["row_id"].iloc[pos])
        d = np.linalg.norm(full - full[row], axis=1)
        d[row] = np.inf
        got = found[found["query_row"] == row]
        assert got["neighbor_row"].tolist() == np.argsort(d, kind="stable")[:5].tolist()
        assert np.allclose(got["distance"], np.sort(d)[:5], atol=1e-4)
    known = found[found["neighbor_position"] >= 0]
    assert (explored.points["row_id"].to_numpy()[known["neighbor_position"]] == known["neighbor_row"]).all()
    combined = explored.neighbors(positions, k=4, combine=True, index_dir=tmp_path / "index")  # reused
    rows = explored.points["row_id"].to_numpy()[positions]
    d = np.linalg.norm(full - full[rows].mean(axis=0), axis=1)
    d[rows] = np.inf
    assert combined["neighbor_row"].tolist() == np.argsort(d, kind="stable")[:4].tolist()
    assert (combined["query_row"] == -1).all()
    with pytest.raises(ValueError, match="selection is empty"):
        explored.neighbors([], k=3, index_dir=tmp_path / "index")


def test_export_selection_round_trips(explored, tmp_path):
    positions = [3, 1, 40]
    back = pd.read_parquet(explored.export(tmp_path / "sel.parquet", positions))
    expected = explored.points.iloc[positions].reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    csv = pd.read_csv(explored.export(tmp_path / "all.csv"))
    assert len(csv) == len(explored.points) and list(csv.columns) == list(explored.points.columns)
    with pytest.raises(ValueError, match=r"export format '\.xlsx'"):
        explored.export(tmp_path / "sel.xlsx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        explored.export(tmp_path / "missing" / "sel.csv")


def test_point_images_fall_back_never_raise(explored):
    idents = explored.points["identifier"]
    local = int(np.flatnonzero(idents.str.startswith("file://").to_numpy())[0])
    remote = int(np.flatnonzero(~idents.str.startswith("file://").to_numpy())[-1])
    assert explored.image(local).source == "identifier"
    assert explored.image(remote).source in ("hdf5", "placeholder")


def test_stratified_sample_and_fit_only_tsne(images):
    ex = explore(images.parquet, sample=12, stratify="family", project="tsne", project_backend="sklearn", fit_rows=60)
    assert len(ex.points) == 60 and ex.points["family"].value_counts().max() <= 12
    assert ex.notes and "t-SNE via sklearn" in ex.notes[0]
    with pytest.raises(ValueError, match="needs sample=N"):
        explore(images.parquet, stratify="family")
    with pytest.raises(ValueError, match="unknown column 'familia'"):
        explore(images.parquet, sample=5, stratify="familia")
    with pytest.raises(ValueError, match="k=500 clusters need at least 500 rows; got 100"):
        explore(images.parquet, sample=100, cluster=500, project=None)


def test_explore_an_anndata_atlas(atlas):
    ex = explore(atlas.reference["h5ad"], sample=500, cluster=4, project="pca", columns=["cell_type"])
    assert ex.stats is None and len(ex.points) == 500
    assert list(ex.points.columns) == ["row_id", "cell_type", "cluster", "x", "y"]


def test_cli_explore_writes_points_and_prints_a_summary(images, tmp_path, capsys):
    out = tmp_path / "points.parquet"
    argv = ["explore", "--data", str(images.parquet), "--filter", "family=Family01", "--sample", "150"]
    argv += ["--clusters", "2", "--project", "pca", "--composition", "genus", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert '"points": 150' in printed and "points table:" in printed and "Genus" in printed
    points = pd.read_parquet(out)
    assert len(points) == 150 and set(points["family"]) == {"Family01"}
    assert main(["explore", "--data", str(images.parquet), "--filter", "familia=Family01"]) == 2
    assert "unknown column 'familia'" in capsys.readouterr().err


@pytest.mark.ray
def test_ray_steps_match_in_process_and_release_resources(ray_cluster, images):
    assert run_step(os.getpid, use_ray=True) != os.getpid()  # really another process
    kwargs = {"filter": {"family": "Family02"}, "sample": 200, "cluster": 3, "project": "pca", "seed": 3}
    local = explore(images.parquet, **kwargs)
    remote = explore(images.parquet, use_ray=True, **kwargs)
    assert np.array_equal(local.points["cluster"], remote.points["cluster"])
    assert np.allclose(local.points[["x", "y"]], remote.points[["x", "y"]], atol=1e-5)
    total = ray_cluster.cluster_resources()
    deadline = time.monotonic() + 30
    while ray_cluster.available_resources().get("CPU", 0) < total["CPU"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.available_resources().get("CPU", 0) == total["CPU"]
