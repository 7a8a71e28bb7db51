"""The UI's path guard: only paths inside the data roots resolve; everything else is refused with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serve.paths import DataRoots, PathRefused


@pytest.fixture
def layout(tmp_path: Path) -> tuple[DataRoots, Path, Path]:
    """Two roots with data, a secret outside them, and symlinks pointing in and out."""
    root_a, root_b, outside = tmp_path / "a", tmp_path / "b", tmp_path / "outside"
    for d in (root_a / "sub", root_b, outside):
        d.mkdir(parents=True)
    (root_a / "q.parquet").write_bytes(b"x")
    (root_a / "sub" / "r.h5ad").write_bytes(b"x")
    (root_b / "only_in_b.npy").write_bytes(b"x")
    (outside / "secret.txt").write_text("no")
    os.symlink(outside, root_a / "escape")
    os.symlink(outside / "secret.txt", root_a / "secret_link.parquet")
    os.symlink(root_a / "q.parquet", root_b / "inside_link.parquet")
    return DataRoots.parse([root_a, root_b]), root_a, outside


def test_relative_and_absolute_paths_inside_resolve(layout: tuple[DataRoots, Path, Path]) -> None:
    roots, root_a, _ = layout
    assert roots.resolve("q.parquet") == root_a / "q.parquet"
    assert roots.resolve("sub/r.h5ad") == root_a / "sub" / "r.h5ad"
    assert roots.resolve(str(root_a / "sub" / "r.h5ad")) == root_a / "sub" / "r.h5ad"
    assert roots.resolve("only_in_b.npy").name == "only_in_b.npy"  # second root searched too
    assert roots.resolve("inside_link.parquet") == root_a / "q.parquet"  # a link that stays inside is fine


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("../outside/secret.txt", "'..' is not allowed"),
        ("sub/../q.parquet", "'..' is not allowed"),  # refused even though it would stay inside
        ("..\\outside\\secret.txt", "'..' is not allowed"),
        ("/etc/passwd", "outside the data roots"),
        ("escape/secret.txt", "outside the data roots"),
        ("secret_link.parquet", "outside the data roots"),
        ("escape/new.zarr", "outside the data roots"),
        ("", "expected a path"),
        ("q.parquet\x00.txt", "NUL byte"),
        ("x" * 2000, "longer than"),
    ],
)
def test_escapes_are_refused(layout: tuple[DataRoots, Path, Path], bad: str, reason: str) -> None:
    roots, _, outside = layout
    with pytest.raises(PathRefused, match=reason) as err:
        roots.resolve(bad, must_exist=False)
    assert str(outside) not in str(err.value)  # never says what lies outside


def test_absolute_path_into_outside_folder_refused(layout: tuple[DataRoots, Path, Path]) -> None:
    roots, _, outside = layout
    with pytest.raises(PathRefused, match="outside the data roots"):
        roots.resolve(str(outside / "secret.txt"))


def test_missing_input_and_new_output(layout: tuple[DataRoots, Path, Path]) -> None:
    roots, root_a, _ = layout
    with pytest.raises(FileNotFoundError, match="does not exist under the data roots"):
        roots.resolve("nope.parquet")
    assert roots.resolve("sub/new.zarr", must_exist=False) == root_a / "sub" / "new.zarr"
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        roots.resolve("no/such/folder/new.zarr", must_exist=False)


def test_roots_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an existing directory"):
        DataRoots.parse([tmp_path / "missing"])
    with pytest.raises(ValueError, match="at least one data root"):
        DataRoots.parse([])


def test_datasets_listing_skips_links_stores_and_hidden(layout: tuple[DataRoots, Path, Path]) -> None:
    roots, root_a, _ = layout
    hive = root_a / "images" / "source=x"
    hive.mkdir(parents=True)
    (hive / "part-0.parquet").write_bytes(b"x")
    store = root_a / "runs" / "m.zarr"
    (store / "neighbors").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (root_a / ".hidden.parquet").write_bytes(b"x")
    assert [Path(p).name for p in roots.datasets()] == ["images", "q.parquet", "r.h5ad", "only_in_b.npy"]


def test_folder_of_parquet_parts_is_one_dataset(tmp_path: Path) -> None:
    parts, mixed = tmp_path / "parts", tmp_path / "mixed"
    parts.mkdir()
    mixed.mkdir()
    for i in range(3):
        (parts / f"part-{i}.parquet").write_bytes(b"x")
    (mixed / "query.parquet").write_bytes(b"x")
    (mixed / "reference.h5ad").write_bytes(b"x")
    assert [Path(p).name for p in DataRoots.parse([tmp_path]).datasets()] == [
        "query.parquet",
        "reference.h5ad",
        "parts",
    ]


def test_image_stores_listed(tmp_path: Path) -> None:
    (tmp_path / "col" / "embeddings" / "family=A").mkdir(parents=True)
    (tmp_path / "col" / "embeddings" / "family=A" / "part-0.parquet").write_bytes(b"x")
    (tmp_path / "col" / "images.h5").write_bytes(b"x")
    roots = DataRoots.parse([tmp_path])
    assert roots.image_stores() == [str((tmp_path / "col" / "images.h5").resolve())]
    assert roots.datasets() == [str((tmp_path / "col" / "embeddings").resolve())]
