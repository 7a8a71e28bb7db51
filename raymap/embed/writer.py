"""Embedding output: hive-partitioned Parquet (emb-explorer schema), HDF5 thumbnails by uuid, a JSON sidecar."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from raymap.embed.images import ERROR, PATH, PIXELS, THUMBNAIL, THUMBNAIL_FORMAT

log = logging.getLogger(__name__)
META_KEY = b"raymap.embed"  # Parquet schema metadata: the model + preprocessing, as JSON
PARQUET_DIR, THUMBNAILS, SIDECAR, STAGING = "embeddings", "images.h5", "embed.json", ".staging"
DEFAULT_PARTITIONS = ("source_dataset", "img_type")


def output_schema(input_schema: pa.Schema, dim: int, model: dict[str, Any]) -> pa.Schema:
    """``uuid``, ``emb`` (float32 fixed-size list), then the input's metadata columns; model in the metadata."""
    fields = [pa.field("uuid", pa.string()), pa.field("emb", pa.list_(pa.float32(), dim))]
    fields += [f for f in input_schema if f.name not in ("uuid", PATH, "emb", PIXELS, THUMBNAIL, ERROR)]
    return pa.schema(fields, metadata={META_KEY: json.dumps(model, sort_keys=True).encode()})


def read_model_metadata(parquet_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The model record of an embedded dataset (None where it holds no raymap embeddings yet)."""
    files = sorted(Path(parquet_dir).rglob("*.parquet")) if Path(parquet_dir).is_dir() else []
    if not files:
        return None
    import pyarrow.parquet as pq

    meta = pq.read_schema(files[0]).metadata or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else None


def read_summary(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar of an embedding output (model, layout, row count, every run's counts), None if absent."""
    path = Path(out) / SIDECAR
    return json.loads(path.read_text()) if path.is_file() else None


class EmbeddingWriter:
    """Appends embedded batches under ``out``; each Parquet file lands atomically, so resume trusts what it sees.

    Layout (as :func:`raymap.datasets.image_collection`): ``out/embeddings/<k>=<v>/...parquet``,
    ``out/images.h5`` (JPEG bytes as uint8 datasets named by uuid) and ``out/embed.json``.
    Thumbnails are written and flushed before a batch's Parquet files, so a committed row
    always has its thumbnail.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        schema: pa.Schema,
        partition_by: tuple[str, ...] | list[str] | None = None,
        thumbnails: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.root = Path(out)
        self.parquet = self.root / PARQUET_DIR
        self.images_h5 = self.root / THUMBNAILS
        self.sidecar = self.root / SIDECAR
        self.schema = schema
        names = schema.names
        if partition_by is None:
            partition_by = [c for c in DEFAULT_PARTITIONS if c in names]
        unknown = [c for c in partition_by if c not in names or c in ("uuid", "emb")]
        if unknown:
            raise ValueError(f"partition_by {unknown}: not metadata columns; columns: {names[2:]}")
        self.partition_by = list(partition_by)
        if overwrite:
            for p in (self.parquet, self.root / STAGING):
                shutil.rmtree(p, ignore_errors=True)
            for f in (self.images_h5, self.sidecar):
                f.unlink(missing_ok=True)
        self._check_existing()
        shutil.rmtree(self.root / STAGING, ignore_errors=True)  # leftovers of a killed run: never committed
        self.parquet.mkdir(parents=True, exist_ok=True)
        self._run = uuid.uuid4().hex[:8]
        self._seq = 0
        self._h5: Any = None
        if thumbnails:
            import h5py

            self._h5 = h5py.File(self.images_h5, "a")

    def _check_existing(self) -> None:
        stored = read_model_metadata(self.parquet)
        if stored is None:
            return
        wanted = json.loads(self.schema.metadata[META_KEY])
        if stored != wanted:
            raise ValueError(
                f"{self.parquet} holds embeddings of another model/preprocessing: stored {stored}, "
                f"requested {wanted}; write to a new out or pass overwrite=True"
            )
        existing = ds.dataset(self.parquet, format="parquet", partitioning="hive").schema
        if sorted(existing.names) != sorted(self.schema.names):
            raise ValueError(
                f"{self.parquet} has columns {sorted(existing.names)}, this input gives {sorted(self.schema.names)}; "
                "write to a new out or pass overwrite=True"
            )

    def done_uuids(self) -> pa.Array:
        """uuids already committed (what resume skips)."""
        if not any(self.parquet.rglob("*.parquet")):
            return pa.array([], pa.string())
        table = ds.dataset(self.parquet, format="parquet", partitioning="hive").to_table(columns=["uuid"])
        return pc.unique(table.column("uuid").combine_chunks())

    def write(self, batch: pa.Table) -> None:
        """Commit embedded rows: thumbnails first, then the Parquet files, each moved into place atomically."""
        if batch.num_rows == 0:
            return
        if self._h5 is not None and THUMBNAIL in batch.column_names:
            for key, data in zip(batch.column("uuid").to_pylist(), batch.column(THUMBNAIL).to_pylist(), strict=True):
                if data is not None and key not in self._h5:
                    self._h5.create_dataset(key, data=np.frombuffer(data, dtype=np.uint8))
            self._h5.flush()
        table = batch.select(self.schema.names).cast(self.schema)
        staging = self.root / STAGING / f"{self._run}-{self._seq:06d}"
        ds.write_dataset(
            table,
            staging,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([self.schema.field(c) for c in self.partition_by]), flavor="hive")
            if self.partition_by
            else None,
            basename_template=f"part-{self._run}-{self._seq:06d}-{{i}}.parquet",
        )
        for f in sorted(staging.rglob("*.parquet")):
            dest = self.parquet / f.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
        shutil.rmtree(staging)
        self._seq += 1

    def close(self, run: dict[str, Any]) -> dict[str, Any]:
        """Close the thumbnail store and append this run to the sidecar (written atomically); returns the sidecar."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        shutil.rmtree(self.root / STAGING, ignore_errors=True)
        previous = read_summary(self.root) or {}
        sidecar = {
            "model": json.loads(self.schema.metadata[META_KEY]),
            "parquet": PARQUET_DIR,
            "partition_by": self.partition_by,
            "thumbnails": THUMBNAILS if self.images_h5.exists() else None,
            "thumbnail_format": THUMBNAIL_FORMAT,
            "n_rows": int(ds.dataset(self.parquet, format="parquet", partitioning="hive").count_rows()),
            "runs": [*previous.get("runs", []), {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **run}],
        }
        tmp = self.sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(sidecar, indent=2, default=str))
        os.replace(tmp, self.sidecar)
        return sidecar
