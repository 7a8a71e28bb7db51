"""What the page (or a direct API call) sends is checked before any job or exploration starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.params import parse_explore_request, parse_export, parse_filter, parse_int, parse_map_request
from serve.paths import DataRoots, PathRefused

KINDS = {"cell_type": "categorical", "score": "numeric"}


@pytest.fixture
def roots(tmp_path: Path) -> DataRoots:
    for name in ("q.parquet", "r.parquet", "images.h5"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "taken.zarr").mkdir()
    return DataRoots.parse([tmp_path])


def submit(roots: DataRoots, **change: object):
    args = {
        "query": "q.parquet",
        "reference": "r.parquet",
        "out": "new.zarr",
        "labels": ["cell_type"],
        "k": 30.0,  # the page's Number fields send floats
        "kernel": "gauss",
        "index": "auto",
        **change,
    }
    return parse_map_request(roots, **args, column_kinds=KINDS)  # type: ignore[arg-type]


def test_good_request(roots: DataRoots) -> None:
    req = submit(roots, labels=["cell_type", "score"], index="IVF64,Flat")
    assert (req.query.name, req.reference.name, req.out.name) == ("q.parquet", "r.parquet", "new.zarr")
    assert req.map_kwargs() == {
        "k": 30,
        "kernel": "gauss",
        "index": "IVF64,Flat",
        "transfer": {"cell_type": "categorical", "score": "numeric"},
    }


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"k": 0}, ValueError, r"k: expected a whole number in \[1, 1000\], got 0"),
        ({"k": 2.5}, ValueError, "got 2.5"),
        ({"k": "ten"}, ValueError, "got 'ten'"),
        ({"k": True}, ValueError, "got True"),
        ({"k": float("nan")}, ValueError, "got nan"),
        ({"kernel": "evil"}, ValueError, "unknown kernel 'evil'"),
        ({"index": "IVF;rm -rf /"}, ValueError, "faiss factory string"),
        ({"labels": ["nope"]}, ValueError, r"label columns \['nope'\] are not in the reference"),
        ({"out": "x.parquet"}, ValueError, "ending in .zarr"),
        ({"out": "taken.zarr"}, ValueError, "exists already"),
        ({"out": "../x.zarr"}, PathRefused, "'..' is not allowed"),
        ({"out": "/tmp/x.zarr"}, PathRefused, "outside the data roots"),
        ({"query": "/etc/passwd"}, PathRefused, "query '/etc/passwd' is outside"),
        ({"reference": "missing.parquet"}, FileNotFoundError, "reference 'missing.parquet' does not exist"),
    ],
)
def test_bad_requests_name_the_field(roots: DataRoots, change: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        submit(roots, **change)


def test_parse_int_accepts_text_and_integral_floats() -> None:
    assert parse_int("12", "n", 1, 20) == 12
    assert parse_int(12.0, "n", 1, 20) == 12
    with pytest.raises(ValueError, match=r"n: expected a whole number in \[1, 20\], got 21"):
        parse_int(21, "n", 1, 20)


KNOWN = {"family": ["F1", "F2"], "species": None}


def test_filter_only_on_known_values() -> None:
    assert parse_filter({"family": ["F1"]}, KNOWN) == {"family": ["F1"]}
    assert parse_filter({"family": "F2"}, KNOWN) == {"family": ["F2"]}
    with pytest.raises(ValueError, match="do not occur in the data"):
        parse_filter({"family": ["F9"]}, KNOWN)
    with pytest.raises(ValueError, match=r"cannot be filtered; choose from \['family'\]"):
        parse_filter({"species": ["x"]}, KNOWN)
    with pytest.raises(ValueError, match="choose 1 to"):
        parse_filter({"family": []}, KNOWN)
    with pytest.raises(ValueError, match="expected"):
        parse_filter(["family"], KNOWN)


def test_explore_request(roots: DataRoots) -> None:
    req = parse_explore_request(roots, "q.parquet", {"family": ["F1"]}, 5000, 0, "auto", "umap", "images.h5", KNOWN)
    assert (req.sample, req.cluster_k, req.projection, req.images.name) == (5000, None, "umap", "images.h5")
    with pytest.raises(ValueError, match="at least 2 clusters"):
        parse_explore_request(roots, "q.parquet", {}, 5000, 1, "auto", "pca", None, KNOWN)
    with pytest.raises(ValueError, match=r"sample size: expected a whole number in \[100, 2000000\]"):
        parse_explore_request(roots, "q.parquet", {}, 10, 4, "auto", "pca", None, KNOWN)
    with pytest.raises(ValueError, match="unknown projection 'svd'"):
        parse_explore_request(roots, "q.parquet", {}, 5000, 4, "auto", "svd", None, KNOWN)
    with pytest.raises(PathRefused, match="image store"):
        parse_explore_request(roots, "q.parquet", {}, 5000, 4, "auto", "pca", "/etc/hostname", KNOWN)


def test_export_target(roots: DataRoots) -> None:
    assert parse_export(roots, "sel.csv").name == "sel.csv"
    with pytest.raises(ValueError, match=r"ending in \.parquet or \.csv"):
        parse_export(roots, "sel.txt")
    with pytest.raises(ValueError, match="exists already"):
        parse_export(roots, "q.parquet")
    with pytest.raises(PathRefused):
        parse_export(roots, "../sel.csv")
