"""The explore job over raymap.explore.explore: config checked against the facade, points exported to ``out``."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("raymap.explore", reason="the exploration engine (raymap.explore) is not in this checkout")


def test_explore_job_exports_clustered_projected_points(images, tmp_path, capsys):
    from raymap.jobs.explore import main

    out = tmp_path / "points.parquet"
    config = {"data": str(images.parquet), "out": str(out), "sample": 500, "cluster": 4, "project": "pca"}
    config["use_ray"] = False
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(tmp_path / "job.yaml")]) == 0
    assert f"raymap-result out={out}" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.num_rows == 500
    assert {"cluster", "x", "y"} <= set(table.column_names)


def test_explore_job_refuses_unknown_keys(images, tmp_path, capsys):
    from raymap.jobs.explore import check_config, main

    with pytest.raises(ValueError, match=r"unknown explore job config key\(s\) \['clusters'\]"):
        check_config({"data": str(images.parquet), "out": "x.parquet", "clusters": 4})
    assert main(["--data", str(images.parquet)]) == 2
    assert "explore job config is missing required key(s) ['out']" in capsys.readouterr().err
