"""Streamed transfer: peak memory at two query sizes (ratio), and label-transfer accuracy per kernel.

    python -m bench.bench_transfer [--quick] [--n-query N] [--n-ref N] [--skip-accuracy]

Memory: a synthetic mapping store (random neighbours, gauss weights) is written for n and 4n
query rows over the same reference; each transfer (two label columns, a 1-D numeric field,
a 32-column numeric field read from a zarr array on disk, presence scores) runs in a fresh
process whose whole-tree peak RSS is sampled. Flat memory means a ratio near 1. Each size also
runs with ``MALLOC_TRIM_THRESHOLD_=0``: glibc otherwise keeps freed chunk buffers mapped, which
shows as slow RSS creep that is the allocator's, not data held by raymap (tracemalloc shows none).
Accuracy: the demo atlas mapped with raymap.map (Flat index, k=30) for every kernel; the
fraction of query cells of shared types whose predicted cell_type is right, and the
agreement with the cellmapper package on the same data when it is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench._harness import measure, run_fresh, write_record

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAYMAP_BENCH_DATA", ROOT / "bench" / "data"))
CROSS_KERNELS = ("gauss", "scarches", "inverse_distance", "equal", "gauss_local", "jaccard", "hnoca")


def synthetic_store(path: Path, n_query: int, n_ref: int, k: int, chunk_rows: int) -> None:
    """A complete store written chunk by chunk (memory flat): random neighbour ids, sorted distances."""
    from raymap.kernels import KERNELS, weigh
    from raymap.store import MappingStore

    store = MappingStore.create(path, n_query, n_ref, k, chunk_rows, {"kernel": "gauss"}, overwrite=True)
    store.group.attrs.update({"kernel_param": 1.0, "distance_mean": 1.0, "self_mapping": False})
    for unit, (s, e) in enumerate(store.units()):
        rng = np.random.default_rng(unit)
        ids = np.stack([rng.choice(n_ref, k, replace=False) for _ in range(e - s)])
        dist = np.sort(rng.gamma(4.0, 0.25, (e - s, k)).astype(np.float32), axis=1)
        store.write_neighbors(s, ids, dist)
        store.write_weights(s, weigh(KERNELS["gauss"], dist, 1.0)[0])
        store.commit("search", unit)
        store.commit("weights", unit)


def reference_fields(root: Path, n_ref: int, width: int) -> dict[str, Any]:
    """Reference metadata: two label columns in memory, a numeric column, a wide matrix in zarr."""
    import zarr

    path = root / f"expr-{n_ref}x{width}.zarr"
    if not path.exists():
        arr = zarr.create_array(path, shape=(n_ref, width), chunks=(65_536, width), dtype="float32")
        for s in range(0, n_ref, 65_536):
            e = min(s + 65_536, n_ref)
            arr[s:e] = np.random.default_rng(s).gamma(2.0, 1.0, (e - s, width)).astype(np.float32)
    rng = np.random.default_rng(0)
    types = rng.integers(0, 40, n_ref)
    return {
        "cell_type": ("categorical", np.array([f"t{t:02d}" for t in types], dtype=object)),
        "lineage": ("categorical", np.array([f"l{t % 6}" for t in types], dtype=object)),
        "score": ("numeric", rng.normal(size=n_ref)),
        "expr": ("numeric", str(path)),
    }


def worker(store: Path, n_ref: int, width: int, budget: str) -> None:
    """One transfer in this (fresh) process; prints its JSON figures."""
    from raymap.result import MappingResult

    spec = reference_fields(store.parent, n_ref, width)  # built before measuring: the reference's own size
    result = MappingResult(store)
    with measure() as m:
        result.transfer(spec, memory_budget=budget)
    with measure() as p:
        result.presence(reference_labels=spec["cell_type"][1], memory_budget=budget)
    print(json.dumps({"transfer": m, "presence": p}))


def memory_runs(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    root = DATA / "transfer"
    root.mkdir(parents=True, exist_ok=True)
    reference_fields(root, args.n_ref, args.width)
    for n in (args.n_query, 4 * args.n_query):
        path = root / f"store-{n}-{args.n_ref}.zarr"
        if not (path / "zarr.json").exists():
            synthetic_store(path, n, args.n_ref, args.k, args.chunk_rows)
        worker = ["--worker", str(path), "--n-ref", str(args.n_ref)]
        worker += ["--width", str(args.width), "--memory-budget", args.memory_budget]
        runs = {}
        for name, env in (("default", {}), ("malloc_trim", {"MALLOC_TRIM_THRESHOLD_": "0"})):
            runs[name] = run_fresh("bench.bench_transfer", worker, env)
        figures[f"n{n}"] = {**runs["default"], "malloc_trim": runs["malloc_trim"]}
        figures[f"n{n}"]["rows_per_s"] = round(n / runs["default"]["transfer"]["seconds"])
    small, large = figures[f"n{args.n_query}"], figures[f"n{4 * args.n_query}"]
    figures["peak_rss_ratio_4x"] = round(large["transfer"]["peak_rss_gib"] / small["transfer"]["peak_rss_gib"], 3)
    figures["peak_rss_ratio_4x_malloc_trim"] = round(
        large["malloc_trim"]["transfer"]["peak_rss_gib"] / small["malloc_trim"]["transfer"]["peak_rss_gib"], 3
    )
    figures["presence_peak_rss_ratio_4x"] = round(
        large["presence"]["peak_rss_gib"] / small["presence"]["peak_rss_gib"], 3
    )
    return figures


def accuracy_runs(n_ref: int, n_query: int) -> dict[str, Any]:
    """Per kernel: accuracy on shared types, agreement with cellmapper (same data, Flat, k=30)."""
    import anndata as ad

    import raymap
    from raymap import datasets

    root = DATA / f"atlas-{n_ref}-{n_query}"
    atlas = datasets.cell_atlas(root, n_ref=n_ref, n_query=n_query, formats=("h5ad",))
    truth = ad.read_h5ad(atlas.query["h5ad"]).obs["cell_type"].astype(str).to_numpy()
    shared = ~np.isin(truth, atlas.query_only_types)
    runs: list[tuple[str, Any, int, dict[str, Any]]] = [
        (kern, atlas.reference["h5ad"], 30, {}) for kern in CROSS_KERNELS
    ]
    out: dict[str, Any] = {}
    for kernel, reference, k, transfer_opts in runs:
        with measure() as m:
            result = raymap.map(
                atlas.query["h5ad"], reference, root / f"{kernel}.zarr", k=k, kernel=kernel, index="Flat",
                overwrite=True,
            )  # fmt: off
            result.transfer({"cell_type": "categorical"}, **transfer_opts)
        pred = result.labels("cell_type")
        out[kernel] = {
            "accuracy_shared_types": round(float((pred[shared] == truth[shared]).mean()), 4),
            "seconds": m["seconds"],
            "cellmapper_agreement": _cellmapper_agreement(atlas, kernel, pred),
        }
    out["umap_self_union_reference"] = _self_mapping_accuracy(atlas, root)
    return out


def _cellmapper_agreement(atlas: Any, kernel: str, pred: np.ndarray) -> float | None:
    try:
        from cellmapper import CellMapper
        from cellmapper.constants import PackageConstants as known
    except ImportError:
        return None
    if kernel not in known.CONNECTIVITY_BASED_KERNELS | known.JACCARD_BASED_KERNELS:
        return None  # a raymap-only kernel
    import anndata as ad

    cm = CellMapper(ad.read_h5ad(atlas.query["h5ad"]), ad.read_h5ad(atlas.reference["h5ad"]))
    cm.map(obs_keys="cell_type", use_rep="X_pca", n_neighbors=30, knn_method="sklearn", kernel_method=kernel)
    return round(float((pred == cm.query.obs["cell_type_pred"].astype(str).to_numpy()).mean()), 4)


def _self_mapping_accuracy(atlas: Any, root: Path) -> dict[str, Any]:
    """Self-mapping the reference with umap + fuzzy union: how often a cell's label is its neighbours'."""
    import anndata as ad

    import raymap

    truth = ad.read_h5ad(atlas.reference["h5ad"]).obs["cell_type"].astype(str).to_numpy()
    result = raymap.map(atlas.reference["h5ad"], None, root / "umap-self.zarr", k=29, kernel="umap", index="Flat",
                        overwrite=True)  # fmt: off
    result.transfer({"cell_type": "categorical"}, symmetrize="union")
    return {"accuracy": round(float((result.labels("cell_type") == truth).mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--n-query", type=int, default=1_000_000, help="smaller query size (the larger is 4x)")
    ap.add_argument("--n-ref", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--width", type=int, default=32, help="columns of the on-disk numeric field")
    ap.add_argument("--chunk-rows", type=int, default=65_536)
    ap.add_argument("--memory-budget", default="512MiB")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.n_ref, args.width, args.memory_budget)
        return 0
    if args.quick:
        args.n_query, args.n_ref, args.chunk_rows = 50_000, 50_000, 8_192
    atlas_size = (3_000, 1_000) if args.quick else (20_000, 5_000)
    params = {k: v for k, v in vars(args).items() if k != "worker"} | {"atlas_ref_query": atlas_size}
    figures = memory_runs(args)
    if not args.skip_accuracy:
        figures["accuracy"] = accuracy_runs(*atlas_size)
    small, large = figures[f"n{args.n_query}"]["transfer"], figures[f"n{4 * args.n_query}"]["transfer"]
    line = (
        f"transfer: peak RSS {small['peak_rss_gib']:.2f} GiB at {args.n_query:,} query rows, "
        f"{large['peak_rss_gib']:.2f} GiB at {4 * args.n_query:,} (ratio {figures['peak_rss_ratio_4x']:.2f}, "
        f"{figures['peak_rss_ratio_4x_malloc_trim']:.2f} with MALLOC_TRIM_THRESHOLD_=0); "
        f"{figures[f'n{4 * args.n_query}']['rows_per_s']:,} rows/s"
    )
    if "accuracy" in figures:
        acc = {k: v.get("accuracy_shared_types", v.get("accuracy")) for k, v in figures["accuracy"].items()}
        line += f"; accuracy per kernel {acc}"
    write_record("transfer", params, figures, line, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
