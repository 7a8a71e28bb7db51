"""Ray's cost on one node: raymap.map vs a plain single-process faiss loop, same index/batches/outputs.

    python -m bench.bench_overhead [--quick] [--n-query N] [--n-ref N]

Both sides read the same Parquet query unit by unit, search the same saved index with the same
nprobe and k, write neighbours + true distances to an identical zarr store, then weights in a
second pass. The baseline runs first, before Ray starts, so its peak RSS is its own; then raymap
and the baseline alternate (``--repeats``) and the time ratio compares each side's best run, so a
noisy shared machine does not decide the figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
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


def run_raymap(query, ref, root: Path, **kwargs) -> tuple[dict[str, float], object]:
    """``raymap.map`` of query onto ref into ``root/raymap.zarr`` with the saved index, measured."""
    import raymap

    shutil.rmtree(root / "raymap.zarr", ignore_errors=True)
    with measure() as m:
        res = raymap.map(
            query.path,
            ref.path,
            root / "raymap.zarr",
            index_dir=root / "index",
            memory_budget="2GiB",
            validate=False,
            **kwargs,
        )
    return m, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--n-query", type=int, default=1_000_000)
    ap.add_argument("--n-ref", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="raymap runs, alternating with plain runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_query, args.n_ref, args.repeats = 20_000, 20_000, 1
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

    def run_plain() -> dict[str, float]:
        with measure() as m:
            plain_loop(query, manifest, root / "plain.zarr", args.k, chunk_rows, args.nprobe, threads)
        return m

    # The first plain run precedes Ray, so its peak RSS is its own; then the two alternate so that
    # drifts of a shared machine hit both sides, and the ratio takes each side's best time.
    plains = [run_plain()]
    from raymap.runtime import ensure_ray

    with measure() as start:
        ensure_ray()
    with measure() as idle:
        time.sleep(2)
    rms = []
    for rep in range(args.repeats):
        m, res = run_raymap(query, ref, root, k=args.k, index=factory, nprobe=args.nprobe)
        rms.append(m)
        if rep + 1 < args.repeats:
            plains.append(run_plain())
    assert res.store.chunk_rows == chunk_rows, (res.store.chunk_rows, chunk_rows)
    from raymap.store import MappingStore

    same = np.array_equal(MappingStore(root / "plain.zarr").neighbors()[0], res.neighbors()[0])
    plain_s, rm_s = min(p["seconds"] for p in plains), min(m["seconds"] for m in rms)
    figures = {
        "plain_seconds": plain_s,
        "plain_peak_rss_gib": plains[0]["peak_rss_gib"],
        "raymap_seconds": rm_s,
        "raymap_peak_rss_gib": max(m["peak_rss_gib"] for m in rms),
        "ratio_time": round(rm_s / plain_s, 3),
        "plain_seconds_all": [p["seconds"] for p in plains],
        "raymap_seconds_all": [m["seconds"] for m in rms],
        "ray_start_seconds": start["seconds"],
        "ray_idle_rss_gib": idle["peak_rss_gib"],
        "raymap_rows_per_s": round(args.n_query / rm_s),
        "plain_rows_per_s": round(args.n_query / plain_s),
        "identical_neighbor_ids": bool(same),
        "pool": res.attrs.get("pool"),
    }
    line = (
        f"overhead: raymap {rm_s:.1f} s vs plain faiss loop {plain_s:.1f} s = {figures['ratio_time']:.2f}x "
        f"(best of {len(rms)} / {len(plains)}, alternating); peak RSS {figures['raymap_peak_rss_gib']:.2f} GiB "
        f"(Ray idle {idle['peak_rss_gib']:.2f}) vs {plains[0]['peak_rss_gib']:.2f} GiB; ids identical: {same}"
    )
    write_record("overhead", params, figures, line, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
