"""Ray's cost on one node: raymap.map vs a plain single-process faiss loop, same index/batches/outputs.

    python -m bench.bench_overhead [--quick] [--n-query N] [--n-ref N]

Both sides read the same Parquet query unit by unit, search the same saved index with the same
nprobe and k, write neighbours + true distances to an identical zarr store, then weights in a
second pass. The baseline runs first, before Ray starts, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from bench._harness import measure, write_record

DATA = Path(os.environ.get("RAYMAP_BENCH_DATA", Path(__file__).resolve().parent / "data"))


def plain_loop(
    query, manifest, out: Path, k: int, chunk_rows: int, nprobe: int | None, threads: int, backend: str = "faiss-cpu"
) -> None:
    """The baseline: one process, one searcher, the same reads, writes and kernel pass."""
    from raymap.index import load_searcher
    from raymap.kernels import bandwidth, merge_stats, parse_kernel
    from raymap.pool import finish_unit, weigh_unit
    from raymap.store import MappingStore

    store = MappingStore.create(out, query.n_rows, manifest.n_rows, k, chunk_rows, {"bench": "plain"}, overwrite=True)
    searcher = load_searcher(manifest.shard_path(0), 0, manifest.metric, nprobe, backend, threads)
    stats = []
    for start, stop in store.units():
        dist, ids = searcher.search(query.read(start, stop), k)
        stats.append(finish_unit(store, start, np.arange(start, stop), dist, ids, k, False))
    kern = parse_kernel("gauss")
    param = bandwidth(kern, merge_stats(stats))
    for start, stop in store.units():
        weigh_unit(store, start, stop, kern.name, param)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--n-query", type=int, default=1_000_000)
    ap.add_argument("--n-ref", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--nprobe", type=int, default=16)
    args = ap.parse_args(argv)
    if args.quick:
        args.n_query, args.n_ref = 20_000, 20_000
    import raymap
    from raymap import datasets
    from raymap.index import IndexSpec, build_index
    from raymap.mapper import unit_rows_for
    from raymap.sources import open_source

    root = DATA / f"overhead-{args.n_ref}-{args.n_query}"
    if not (root / "query.parquet").exists():
        datasets.cell_atlas(root, args.n_ref, args.n_query, formats=("parquet",))
    query, ref = open_source(root / "query.parquet"), open_source(root / "reference.parquet")
    factory = "IVF64,Flat" if args.quick else "IVF4096,Flat"
    manifest = build_index(ref, root / "index", IndexSpec(factory, nprobe=args.nprobe), k=args.k)
    threads = os.cpu_count() or 1
    chunk_rows = unit_rows_for(2 * 2**30, query.dim, args.k, 2, query.n_rows)
    params = {
        "n_query": args.n_query,
        "n_ref": args.n_ref,
        "dim": query.dim,
        "k": args.k,
        "index": factory,
        "nprobe": args.nprobe,
        "unit_rows": chunk_rows,
        "faiss_threads": threads,
        "kernel": "gauss",
    }

    with measure() as plain:
        plain_loop(query, manifest, root / "plain.zarr", args.k, chunk_rows, args.nprobe, threads)
    from raymap.runtime import ensure_ray

    with measure() as start:
        ensure_ray()
    with measure() as idle:
        import time

        time.sleep(2)
    shutil.rmtree(root / "raymap.zarr", ignore_errors=True)
    with measure() as rm:
        res = raymap.map(
            query.path,
            ref.path,
            root / "raymap.zarr",
            k=args.k,
            index=factory,
            nprobe=args.nprobe,
            index_dir=root / "index",
            memory_budget="2GiB",
            validate=False,
        )
    assert res.store.chunk_rows == chunk_rows, (res.store.chunk_rows, chunk_rows)
    from raymap.store import MappingStore

    same = np.array_equal(MappingStore(root / "plain.zarr").neighbors()[0], res.neighbors()[0])
    figures = {
        "plain_seconds": plain["seconds"],
        "plain_peak_rss_gib": plain["peak_rss_gib"],
        "raymap_seconds": rm["seconds"],
        "raymap_peak_rss_gib": rm["peak_rss_gib"],
        "ratio_time": round(rm["seconds"] / plain["seconds"], 3),
        "ray_start_seconds": start["seconds"],
        "ray_idle_rss_gib": idle["peak_rss_gib"],
        "raymap_rows_per_s": round(args.n_query / rm["seconds"]),
        "plain_rows_per_s": round(args.n_query / plain["seconds"]),
        "identical_neighbor_ids": bool(same),
        "pool": res.attrs.get("pool"),
    }
    line = (
        f"overhead: raymap {rm['seconds']:.1f} s vs plain faiss loop {plain['seconds']:.1f} s "
        f"= {figures['ratio_time']:.2f}x; peak RSS {rm['peak_rss_gib']:.2f} GiB (Ray idle {idle['peak_rss_gib']:.2f}) "
        f"vs {plain['peak_rss_gib']:.2f} GiB; ids identical: {same}"
    )
    write_record("overhead", params, figures, line, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
