"""Data roots: the only folders the UI reads or writes; every user-supplied path is resolved against them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_PATH_CHARS = 1024
# What the pickers offer: embedding tables and stores raymap can open (raymap.sources.open_source).
DATASET_SUFFIXES = (".parquet", ".h5ad", ".npy", ".zarr")
IMAGE_STORE_SUFFIXES = (".h5", ".hdf5")
MAX_LISTED = 500
MAX_DEPTH = 4
_NUMBERED = re.compile(r"\d+[^/]*\.parquet$")


class PathRefused(ValueError):
    """A path outside the data roots (or malformed): the message says why, never what lies outside."""


@dataclass(frozen=True, slots=True)
class DataRoots:
    """Configured data roots, resolved (symlinks followed) once at start-up.

    Attributes
    ----------
    roots
        Absolute, real paths of existing directories; relative user paths are tried in this order.
    """

    roots: tuple[Path, ...]

    @classmethod
    def parse(cls, roots: Iterable[str | os.PathLike[str]]) -> DataRoots:
        """Check that each root exists and is a directory; at least one is required."""
        resolved = []
        for root in roots:
            path = Path(root).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"data root is not an existing directory: {path}")
            resolved.append(path.resolve())
        if not resolved:
            raise ValueError("at least one data root is required (--data-root DIR)")
        return cls(tuple(dict.fromkeys(resolved)))

    def resolve(self, path: str, *, must_exist: bool = True, what: str = "path") -> Path:
        """The real path of ``path`` if it lies inside a data root, else :class:`PathRefused`.

        Refused: empty or over-long values, NUL bytes, any ``..`` component (even one that
        would stay inside), absolute paths outside every root, and symlinks whose target
        leaves the roots. Relative paths are looked up under each root in order; for a new
        file (``must_exist=False``) the first root whose parent folder exists is used.
        """
        text = _parse_text(path, what)
        candidates = [Path(text)] if os.path.isabs(text) else [root / text for root in self.roots]
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if not self.contains(real):  # absolute elsewhere, or a symlink on the way leads out
                raise PathRefused(f"{what} {text!r} is outside the data roots {self.display_roots()}")
            if real.exists() or (not must_exist and real.parent.is_dir()):
                return real
        if must_exist:
            raise FileNotFoundError(f"{what} {text!r} does not exist under the data roots {self.display_roots()}")
        raise FileNotFoundError(f"{what} {text!r}: its folder does not exist under the data roots")

    def contains(self, real: Path) -> bool:
        """Whether an already-resolved path is a root or lies below one."""
        return any(real == root or root in real.parents for root in self.roots)

    def display_roots(self) -> list[str]:
        return [str(r) for r in self.roots]

    def datasets(self) -> list[str]:
        """Paths (absolute) of embedding inputs under the roots, for the pickers; mapping stores excluded.

        A folder is one dataset when it ends in ``.parquet``/``.zarr``, holds hive partitions
        (``key=value`` folders) or holds nothing but numbered Parquet parts; its inside is not listed again.
        Symlinks are not followed, hidden entries are skipped, depth and count are bounded.
        """
        found: list[str] = []
        for root in self.roots:
            _walk(root, 0, found, DATASET_SUFFIXES)
        return sorted(found)[:MAX_LISTED]

    def image_stores(self) -> list[str]:
        """HDF5 files under the roots: thumbnail stores the Explore tab falls back to."""
        found: list[str] = []
        for root in self.roots:
            _walk(root, 0, found, IMAGE_STORE_SUFFIXES)
        return sorted(found)[:MAX_LISTED]


def _parse_text(path: object, what: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise PathRefused(f"{what}: expected a path under the data roots, got {path!r}")
    text = path.strip()
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"{what}: path longer than {MAX_PATH_CHARS} characters")
    if "\x00" in text:
        raise PathRefused(f"{what}: path contains a NUL byte")
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        raise PathRefused(f"{what} {text!r}: '..' is not allowed; give a path inside a data root")
    return text


def _is_dataset_dir(path: Path) -> bool:
    """``*.parquet``/``*.zarr`` folders, hive-partitioned folders, and folders of nothing but numbered Parquet parts."""
    if path.suffix in (".parquet", ".zarr"):
        return True
    try:
        entries = [e for e in os.scandir(path) if not e.name.startswith((".", "_"))]
    except OSError:
        return False
    if any("=" in e.name and e.is_dir(follow_symlinks=False) for e in entries):
        return True
    # Numbered parts (part-0.parquet, data_00001.parquet) make one dataset; query.parquet and
    # reference.parquet side by side are two.
    return bool(entries) and all(
        e.name.endswith(".parquet") and e.is_file() and _NUMBERED.search(e.name) for e in entries
    )


def _is_mapping_store(path: Path) -> bool:
    return (path / "neighbors").is_dir() and (path / "zarr.json").exists()


def _walk(folder: Path, depth: int, found: list[str], suffixes: tuple[str, ...]) -> None:
    if depth > MAX_DEPTH or len(found) >= MAX_LISTED:
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        path = Path(entry.path)
        if entry.is_dir():
            if not _is_dataset_dir(path):
                _walk(path, depth + 1, found, suffixes)
            elif suffixes == DATASET_SUFFIXES and not _is_mapping_store(path):
                found.append(str(path))
        elif path.suffix in suffixes:
            found.append(str(path))
