"""``raymap transfer`` on an existing store: several fields + presence, a JSON summary, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transfer_stores import build_store

from raymap.cli import main
from raymap.result import MappingResult
from raymap.sources import ParquetSource


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    from raymap import datasets

    root = tmp_path_factory.mktemp("cli")
    atlas = datasets.cell_atlas(root, n_ref=1_200, n_query=400, formats=("parquet",), chunk_rows=300)
    ref, query = ParquetSource(atlas.reference["parquet"]), ParquetSource(atlas.query["parquet"])
    store = build_store(root / "m.zarr", query.read(0, query.n_rows), ref.read(0, ref.n_rows), 15, 128)
    store.group.attrs["reference"] = str(atlas.reference["parquet"])  # as raymap.map records it
    return store, ref, query


def test_cli_transfer_prints_summary(mapped, capsys):
    store, ref, query = mapped
    code = main(
        ["transfer", store.path, "--fields", "cell_type=categorical,lineage=categorical,score=numeric",
         "--threshold", "0.3", "--presence", "--presence-labels", "cell_type", "--presence-groupby", "cell_type"]
    )  # fmt: off
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ("cell_type", "lineage"):
        counts = summary[name]["label_counts"]
        assert len(counts) <= 10
        assert sum(counts.values()) + summary[name]["other"] + summary[name]["unknown"] == query.n_rows
        assert set(summary[name]["confidence_quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    assert summary["score"]["shape"] == [query.n_rows]
    assert set(summary["presence_score"]["by_reference_label"]) == set(ref.read_column("cell_type"))
    result = MappingResult(store.path)
    accuracy = (result.labels("cell_type") == query.read_column("cell_type")).mean()
    assert accuracy > 0.7
    assert list(result.presence_score(groups=True).columns) == sorted(set(result.labels("cell_type")))


def test_cli_transfer_errors(mapped, capsys):
    store, _, _ = mapped
    assert main(["transfer", store.path, "--fields", "tissue=categorical"]) == 2
    assert "reference has no column 'tissue'" in capsys.readouterr().err
    assert main(["transfer", store.path, "--fields", "score=numeric", "--t", "0"]) == 2
    assert "t: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["transfer", store.path]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert np.isfinite(MappingResult(store.path).values("score")).all()
