"""Deterministic demo data, streamed to disk in chunks: a cell atlas and an image-embedding collection."""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ATLAS_FORMATS = ("parquet", "zarr", "h5ad")
LATENT_DIM = 8


def embedding_array(x: np.ndarray) -> pa.FixedSizeListArray:
    """(n, dim) float32 -> Arrow fixed-size-list column, zero-copy."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


@dataclass(frozen=True, slots=True)
class AtlasModel:
    """The generative model shared by reference and query: types on a low-dimensional manifold."""

    type_centers: np.ndarray  # (n_types, LATENT_DIM)
    lineage_of_type: np.ndarray  # (n_types,)
    ref_p: np.ndarray  # type probabilities in the reference
    query_p: np.ndarray  # ... in the query
    lift: np.ndarray  # (LATENT_DIM, dim) linear part of the latent -> embedding map
    bend: np.ndarray  # (LATENT_DIM, dim) nonlinear part
    batch_shift: np.ndarray  # (dim,) added to every query cell

    @classmethod
    def make(cls, n_types: int, dim: int, seed: int, n_ref_only: int = 2, n_query_only: int = 2) -> AtlasModel:
        if n_types < n_ref_only + n_query_only + 2:
            raise ValueError(f"n_types must be >= {n_ref_only + n_query_only + 2}, got {n_types}")
        rng = np.random.default_rng(seed)
        n_lineages = max(2, n_types // 4)
        lineage_centers = rng.normal(0, 6.0, (n_lineages, LATENT_DIM))
        lineage_of_type = np.arange(n_types) % n_lineages
        type_centers = lineage_centers[lineage_of_type] + rng.normal(0, 0.8, (n_types, LATENT_DIM))
        sizes = 1.0 / np.arange(1, n_types + 1) ** 0.8  # unequal type sizes, like real atlases
        sizes = sizes[rng.permutation(n_types)]
        ref_p, query_p = sizes.copy(), sizes.copy()
        ref_p[n_types - n_query_only :] = 0  # query-only types: no reference counterpart
        query_p[n_types - n_query_only - n_ref_only : n_types - n_query_only] = 0  # reference-only
        lift = rng.normal(0, 1 / np.sqrt(LATENT_DIM), (LATENT_DIM, dim))
        bend = rng.normal(0, 1 / np.sqrt(LATENT_DIM), (LATENT_DIM, dim))
        shift = rng.normal(0, 1, dim)
        return cls(
            type_centers,
            lineage_of_type,
            ref_p / ref_p.sum(),
            query_p / query_p.sum(),
            lift,
            bend,
            0.6 * shift / np.linalg.norm(shift) * np.sqrt(dim) * 0.15,
        )

    def sample(self, n: int, rng: np.random.Generator, query: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` cells: embeddings (n, dim) float32, type codes, a numeric field."""
        types = rng.choice(len(self.type_centers), size=n, p=self.query_p if query else self.ref_p)
        z = self.type_centers[types] + rng.normal(0, 1.0, (n, LATENT_DIM))
        x = z @ self.lift + 1.5 * np.sin(z / 3) @ self.bend + rng.normal(0, 0.3, (n, self.lift.shape[1]))
        if query:
            x += self.batch_shift
        score = z[:, 0] + 0.5 * z[:, 1] + rng.normal(0, 0.1, n)
        return x.astype(np.float32), types, score.astype(np.float32)


@dataclass(frozen=True, slots=True)
class Atlas:
    """Paths of a generated atlas; ``reference[fmt]`` / ``query[fmt]`` per written format."""

    root: Path
    reference: dict[str, Path]
    query: dict[str, Path]
    cell_types: list[str]
    lineages: list[str]
    ref_only_types: list[str] = field(default_factory=list)
    query_only_types: list[str] = field(default_factory=list)


def cell_atlas(
    out_dir: str | os.PathLike[str],
    n_ref: int = 20_000,
    n_query: int = 5_000,
    dim: int = 50,
    n_types: int = 20,
    seed: int = 0,
    formats: tuple[str, ...] = ATLAS_FORMATS,
    chunk_rows: int = 65_536,
) -> Atlas:
    """Write a synthetic single-cell atlas (reference + query) in chunks; same output for any ``chunk_rows``.

    Cells come from a Gaussian mixture on an 8-D manifold lifted to ``dim`` with a nonlinearity,
    with unequal type sizes, lineages grouping types, a batch shift of the query, a numeric field
    ``score``, two reference-only and two query-only types. Parquet holds ``cell_id``,
    ``cell_type``, ``lineage``, ``score`` and a fixed-size-list ``emb``; zarr the embedding alone;
    ``.h5ad`` the embedding in ``obsm["X_pca"]`` with the same ``obs`` columns.
    """
    unknown = set(formats) - set(ATLAS_FORMATS)
    if unknown:
        raise ValueError(f"unknown atlas formats {sorted(unknown)}; choose from {ATLAS_FORMATS}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    model = AtlasModel.make(n_types, dim, seed)
    cell_types = [f"type_{i:02d}" for i in range(n_types)]
    lineages = [f"lineage_{i}" for i in range(int(model.lineage_of_type.max()) + 1)]
    paths: dict[str, dict[str, Path]] = {}
    for role, n in (("reference", n_ref), ("query", n_query)):
        paths[role] = _write_atlas_part(root, role, n, model, seed, formats, chunk_rows, cell_types, lineages)
    n_q = 2
    return Atlas(
        root,
        paths["reference"],
        paths["query"],
        cell_types,
        lineages,
        ref_only_types=cell_types[n_types - n_q - 2 : n_types - n_q],
        query_only_types=cell_types[n_types - n_q :],
    )


_SEED_BLOCK = 4096


def _atlas_rows(model: AtlasModel, seed: int, is_query: bool, start: int, stop: int) -> tuple[np.ndarray, ...]:
    """Rows ``[start, stop)``: generated per fixed 4096-row seed block, so chunking never changes them."""
    first = start // _SEED_BLOCK * _SEED_BLOCK
    parts = [
        model.sample(_SEED_BLOCK, np.random.default_rng([seed, int(is_query), b // _SEED_BLOCK]), is_query)
        for b in range(first, stop, _SEED_BLOCK)
    ]
    return tuple(np.concatenate([p[i] for p in parts])[start - first : stop - first] for i in range(3))


def _write_atlas_part(
    root: Path,
    role: str,
    n: int,
    model: AtlasModel,
    seed: int,
    formats: tuple[str, ...],
    chunk_rows: int,
    cell_types: list[str],
    lineages: list[str],
) -> dict[str, Path]:
    import zarr

    dim = model.lift.shape[1]
    out = {fmt: root / f"{role}.{fmt}" for fmt in formats}
    writer = None
    zarr_array = None
    if "parquet" in formats:
        schema = pa.schema(
            [
                ("cell_id", pa.string()),
                ("cell_type", pa.string()),
                ("lineage", pa.string()),
                ("score", pa.float32()),
                ("emb", pa.list_(pa.float32(), dim)),
            ]
        )
        writer = pq.ParquetWriter(out["parquet"], schema)
    if "zarr" in formats:
        zarr_array = zarr.create_array(
            out["zarr"], shape=(n, dim), chunks=(min(chunk_rows, n), dim), dtype="float32", overwrite=True
        )
    h5_parts: list[tuple[np.ndarray, np.ndarray]] = []  # codes and score: small, for h5ad's obs
    is_query = role == "query"
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        x, types, score = _atlas_rows(model, seed, is_query, start, stop)
        if writer is not None:
            ids = [f"{role[:3]}-{i}" for i in range(start, stop)]
            table = pa.table(
                {
                    "cell_id": ids,
                    "cell_type": np.asarray(cell_types)[types],
                    "lineage": np.asarray(lineages)[model.lineage_of_type[types]],
                    "score": score,
                    "emb": embedding_array(x),
                },
                schema=writer.schema,
            )
            writer.write_table(table, row_group_size=chunk_rows)
        if zarr_array is not None:
            zarr_array[start:stop] = x
        h5_parts.append((types, score))
    if writer is not None:
        writer.close()
    if "h5ad" in formats:
        _write_h5ad(out["h5ad"], role, n, dim, h5_parts, out, model, cell_types, lineages, seed, chunk_rows)
    return out


def _write_h5ad(
    path: Path,
    role: str,
    n: int,
    dim: int,
    parts: list[tuple[np.ndarray, np.ndarray]],
    out: dict[str, Path],
    model: AtlasModel,
    cell_types: list[str],
    lineages: list[str],
    seed: int,
    chunk_rows: int,
) -> None:
    """obs via anndata (small: codes), then obsm["X_pca"] appended in chunks with h5py."""
    import anndata as ad
    import h5py
    import pandas as pd

    types = np.concatenate([p[0] for p in parts])
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(types, cell_types),
            "lineage": pd.Categorical.from_codes(model.lineage_of_type[types], lineages),
            "score": np.concatenate([p[1] for p in parts]),
        },
        index=pd.Index([f"{role[:3]}-{i}" for i in range(n)], name="cell_id"),
    )
    ad.AnnData(obs=obs).write_h5ad(path)
    is_query = role == "query"
    with h5py.File(path, "a") as f:
        dset = f["obsm"].create_dataset("X_pca", shape=(n, dim), dtype="float32", chunks=(min(n, 4096), dim))
        dset.attrs["encoding-type"] = "array"
        dset.attrs["encoding-version"] = "0.2.0"
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            dset[start:stop] = _atlas_rows(model, seed, is_query, start, stop)[0]


# --- image collection -----------------------------------------------------------------

TAXONOMY_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
SOURCE_DATASETS = ("inat21", "bioscan", "eol")


def _taxonomy(rng: np.random.Generator, n_species: int) -> list[dict[str, str]]:
    """A small tree: each species carries its whole lineage; families have several genera."""
    rows = []
    for s in range(n_species):
        fam, gen = s // 6, s // 2
        kingdom = "Animalia" if fam % 3 else "Plantae"
        rows.append(
            {
                "kingdom": kingdom,
                "phylum": "Chordata" if kingdom == "Animalia" else "Tracheophyta",
                "class": f"Class{fam % 4}",
                "order": f"Order{fam % 6}",
                "family": f"Family{fam:02d}",
                "genus": f"Genus{gen:03d}",
                "species": f"species{s:03d}",
            }
        )
    return rows


def _thumbnail(i: int, hue: int) -> bytes:
    """A 32x32 PNG: a real handwritten digit from scikit-learn, tinted per family."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = _digits_cache.setdefault("d", load_digits().images)
    img = (digits[i % len(digits)] / 16.0 * 255).astype(np.uint8)
    rgb = np.stack([img * ((hue >> s) & 1 or 0.35) for s in (0, 1, 2)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((32, 32), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


_digits_cache: dict[str, np.ndarray] = {}


@dataclass(frozen=True, slots=True)
class ImageCollection:
    """Paths of a generated image-embedding collection."""

    root: Path
    parquet: Path  # hive-partitioned: source_dataset=…/family=…
    images_h5: Path  # PNG bytes keyed by uuid
    images_dir: Path  # a few images also as files, reachable by file:// identifiers
    dim: int


def image_collection(
    out_dir: str | os.PathLike[str],
    n: int = 5_000,
    dim: int = 512,
    seed: int = 0,
    n_species: int = 60,
    chunk_rows: int = 65_536,
    n_images: int = 2_000,
    n_image_files: int = 100,
) -> ImageCollection:
    """Write an image-embedding table with the emb-explorer schema, hive-partitioned, in chunks.

    Embeddings are L2-normalised (as CLIP-style models give) around per-species centres that
    share genus and family components, so clustering recovers the taxonomy. The first
    ``n_images`` rows get a thumbnail in an HDF5 store keyed by uuid; the first
    ``n_image_files`` also exist as files named by a ``file://`` identifier, the rest carry an
    unreachable https identifier, so the explorer's fallback path is exercised.
    """
    import h5py

    root = Path(out_dir)
    pq_dir, img_dir, h5_path = root / "embeddings", root / "images", root / "images.h5"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    taxa = _taxonomy(rng, n_species)
    n_fam, n_gen = n_species // 6 + 1, n_species // 2 + 1
    fam_c, gen_c, sp_c = (rng.normal(0, s, (m, dim)) for s, m in ((1.0, n_fam), (0.6, n_gen), (0.4, n_species)))
    weights = rng.dirichlet(np.full(n_species, 0.7))
    partitioning = ds.partitioning(pa.schema([("source_dataset", pa.string()), ("family", pa.string())]), flavor="hive")
    with h5py.File(h5_path, "w") as h5:
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            crng = np.random.default_rng([seed, start])
            sp = crng.choice(n_species, size=stop - start, p=weights)
            fam, gen = sp // 6, sp // 2
            x = fam_c[fam] + gen_c[gen] + sp_c[sp] + crng.normal(0, 0.35, (stop - start, dim))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            uuids = [str(uuid.UUID(bytes=crng.bytes(16), version=4)) for _ in range(stop - start)]
            ident = []
            for j, (u, s) in enumerate(zip(uuids, sp, strict=True)):
                i = start + j
                if i < n_images:
                    png = _thumbnail(i, int(fam[j]) % 7 + 1)
                    h5.create_dataset(u, data=np.frombuffer(png, dtype=np.uint8))
                    if i < n_image_files:
                        (img_dir / f"{u}.png").write_bytes(png)
                ident.append(
                    f"file://{(img_dir / f'{u}.png').resolve()}"
                    if i < n_image_files
                    else f"https://images.invalid/{taxa[s]['species']}/{u}.jpg"
                )
            cols: dict[str, object] = {"uuid": uuids, "emb": embedding_array(x)}
            for level in TAXONOMY_LEVELS:
                cols[level] = [taxa[s][level] for s in sp]
            cols["source_dataset"] = [SOURCE_DATASETS[s % 3] for s in crng.integers(0, 3, stop - start)]
            cols["scientific_name"] = [f"{taxa[s]['genus']} {taxa[s]['species']}" for s in sp]
            cols["common_name"] = [f"common {taxa[s]['species']}" for s in sp]
            cols["publisher"] = [("iNaturalist", "BOLD", "EOL")[s % 3] for s in sp]
            cols["basisOfRecord"] = ["HumanObservation" if s % 4 else "PreservedSpecimen" for s in sp]
            cols["img_type"] = ["photo" if s % 5 else "specimen" for s in sp]
            cols["identifier"] = ident
            ds.write_dataset(
                pa.table(cols),
                pq_dir,
                format="parquet",
                partitioning=partitioning,
                basename_template=f"part-{start // chunk_rows:05d}-{{i}}.parquet",
                existing_data_behavior="overwrite_or_ignore",
                max_rows_per_group=chunk_rows,
            )
    return ImageCollection(root, pq_dir, h5_path, img_dir, dim)
