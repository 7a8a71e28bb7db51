"""GPU shard actors vs the same searcher run raw: rows/s, share of the card's FP32 GEMM rate, idle share.

    python -m bench.bench_gpu [--quick] [--n-query N] [--n-ref N] [--backends torch-exact,faiss-gpu]

For each exact backend (torch GEMM + top-k; faiss-gpu where it installs) the same Flat index is
searched twice on the same query units with the same outputs (neighbours, distances, weights):
raw in this process, then through ``raymap.map`` on GPU shard actors. Figures: time ratio,
search rate as a share of the card's measured dense FP32 GEMM rate (TF32 off), and the share of
the actors' lifetime they sat idle (goal < 5 %). Without CUDA the full run records that it was
skipped; ``--quick`` runs the same code path on CPU (torch-exact on a small atlas).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench._harness import machine, measure, write_record
from bench.bench_overhead import DATA, plain_loop, run_raymap


def gemm_tflops(device: str, n: int) -> float:
    """Dense FP32 ``n x n @ n x n`` rate on ``device`` (best of 5, TF32 disabled): the card's yardstick."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(6):  # the first is a warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (CPU when there is no GPU)")
    ap.add_argument("--n-query", type=int, default=10_000_000)
    ap.add_argument("--n-ref", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--backends", default="torch-exact,faiss-gpu")
    args = ap.parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.n_query, args.n_ref = 8_000, 4_000
    params = {"n_query": args.n_query, "n_ref": args.n_ref, "dim": 50, "k": args.k, "index": "Flat", "device": device}
    if device == "cpu" and not args.quick:
        line = "gpu: skipped, torch sees no CUDA device on this machine"
        write_record("gpu", params, {"skipped": line}, line, args.quick)
        return 0

    from raymap import datasets
    from raymap.index import IndexSpec, available_backends, build_index
    from raymap.mapper import unit_rows_for
    from raymap.runtime import ensure_ray
    from raymap.sources import open_source
    from raymap.store import MappingStore

    root = DATA / f"gpu-{args.n_ref}-{args.n_query}"
    if not (root / "query.parquet").exists():
        datasets.cell_atlas(root, args.n_ref, args.n_query, formats=("parquet",))
    query, ref = open_source(root / "query.parquet"), open_source(root / "reference.parquet")
    manifest = build_index(ref, root / "index", IndexSpec("Flat"), n_shards=1, k=args.k)
    chunk_rows = unit_rows_for(2 * 2**30, query.dim, args.k, 2, query.n_rows)
    gemm = gemm_tflops(device, 8192 if device == "cuda" else 1024)
    search_tflop = 2 * args.n_query * args.n_ref * query.dim / 1e12
    have = available_backends()
    figures: dict[str, object] = {"gemm_fp32_tflops": round(gemm, 3), "unit_rows": chunk_rows}
    threads = os.cpu_count() or 1
    for backend in args.backends.split(","):
        if backend not in have:
            figures[backend] = {"skipped": f"not usable here (available: {have})"}
            continue
        with measure() as raw:
            plain_loop(query, manifest, root / "raw.zarr", args.k, chunk_rows, None, threads, backend)
        ensure_ray()
        rm, res = run_raymap(query, ref, root, k=args.k, index="Flat", backend=backend)
        pool = res.attrs.get("pool", {})
        same = MappingStore(root / "raw.zarr").neighbors()[0]
        figures[backend] = {
            "raw_seconds": raw["seconds"],
            "raymap_seconds": rm["seconds"],
            "ratio_time": round(rm["seconds"] / raw["seconds"], 3),
            "raw_rows_per_s": round(args.n_query / raw["seconds"]),
            "raymap_rows_per_s": round(args.n_query / rm["seconds"]),
            "raw_share_of_gemm": round(search_tflop / raw["seconds"] / gemm, 4),
            "raymap_share_of_gemm": round(search_tflop / rm["seconds"] / gemm, 4),
            "actor_idle_share": pool.get("actor_idle_share"),
            "actor_alive_s": pool.get("actor_alive_s"),
            "raymap_peak_rss_gib": rm["peak_rss_gib"],
            "identical_neighbor_ids": bool((same == res.neighbors()[0]).all()),
        }
    line = f"gpu ({device}, {machine()['gpu'] or 'no GPU'}): GEMM FP32 {gemm:.2f} TFLOP/s; " + "; ".join(
        f"{b} raymap {f['raymap_seconds']:.1f} s vs raw {f['raw_seconds']:.1f} s = {f['ratio_time']:.2f}x, "
        f"{f['raymap_share_of_gemm']:.1%} of GEMM, actors idle {f['actor_idle_share']:.1%}"
        if isinstance(f, dict) and "raw_seconds" in f
        else f"{b} {f}"
        for b, f in figures.items()
        if b in args.backends.split(",")
    )
    write_record("gpu", params, figures, line, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
