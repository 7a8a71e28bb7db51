"""What to embed: a folder tree of images or a CSV/Parquet manifest -> one Arrow table with deterministic uuids."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymap.embed.images import ERROR, PATH, PIXELS, THUMBNAIL

log = logging.getLogger(__name__)
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
RESERVED = ("emb", PIXELS, THUMBNAIL, ERROR, PATH)


def image_uuid(identifier: str) -> str:
    """uuid5 of the identifier: the same image gets the same uuid in every run, which makes resume work."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, identifier))


def local_path(identifier: str, base: Path) -> str | None:
    """A ``file://`` URL or a path (relative to ``base``) -> absolute path; other URLs -> None (not fetched)."""
    parsed = urlparse(identifier)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, still a path
        return None
    return str((base / identifier).resolve())


def read_input(path: str | os.PathLike[str]) -> pa.Table:
    """Rows to embed: ``uuid``, ``identifier``, the local ``_path`` and every metadata column.

    A folder is walked recursively (hidden entries skipped); each file becomes a row with a
    ``file://`` identifier, its sub-folder as ``folder`` and the folder's name as
    ``source_dataset``. A manifest (.csv / .parquet) needs an ``identifier`` column (a path,
    relative to the manifest, or a URL); its ``uuid`` column is kept where present. Rows with a
    repeated uuid are embedded once.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"embedding input not found: {root}")
    table = _read_folder(root) if root.is_dir() else _read_manifest(root)
    uuids = table.column("uuid").to_numpy(zero_copy_only=False)
    _, first = np.unique(uuids, return_index=True)
    if len(first) < table.num_rows:
        log.warning(
            "%s: %d rows repeat an identifier/uuid; each image is embedded once", root, table.num_rows - len(first)
        )
        table = table.take(np.sort(first))
    return table


def _read_folder(root: Path) -> pa.Table:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    if not files:
        raise ValueError(f"{root}: empty folder, no image files found (hidden files are ignored)")
    absolute = [f.resolve() for f in files]
    identifiers = [f.as_uri() for f in absolute]
    return pa.table(
        {
            "uuid": [image_uuid(i) for i in identifiers],
            "folder": [str(f.parent.relative_to(root)) for f in files],
            "source_dataset": [root.resolve().name] * len(files),
            "identifier": identifiers,
            PATH: [str(f) for f in absolute],
        }
    )


def _read_manifest(path: Path) -> pa.Table:
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ValueError(f"{path}: expected an image folder or a manifest {MANIFEST_SUFFIXES}, got {path.suffix!r}")
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    if "identifier" not in table.column_names:
        raise ValueError(f"{path}: manifest has no 'identifier' column; columns: {table.column_names}")
    clash = [c for c in RESERVED if c in table.column_names]
    if clash:
        raise ValueError(f"{path}: manifest columns {clash} are reserved for the embedding output; rename them")
    if table.num_rows == 0:
        raise ValueError(f"{path}: manifest has no rows")
    ident = table.column("identifier").cast(pa.string())
    if ident.null_count:
        missing = np.flatnonzero(ident.is_null().to_numpy(zero_copy_only=False))[:10].tolist()
        raise ValueError(f"{path}: {ident.null_count} rows have no identifier; first rows: {missing}")
    table = table.set_column(table.column_names.index("identifier"), "identifier", ident)
    identifiers = ident.to_pylist()
    derived = pa.array([image_uuid(i) for i in identifiers], pa.string())
    if "uuid" in table.column_names:
        given = table.column("uuid").cast(pa.string())
        table = table.drop_columns(["uuid"]).add_column(0, "uuid", pc.coalesce(given, derived))
    else:
        table = table.add_column(0, "uuid", derived)
    if "source_dataset" not in table.column_names:
        table = table.append_column("source_dataset", pa.array([path.stem] * table.num_rows, pa.string()))
    base = path.resolve().parent
    return table.append_column(PATH, pa.array([local_path(i, base) for i in identifiers], pa.string()))
