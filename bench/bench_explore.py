"""Benchmark: time and peak RSS per exploration stage (filter, sample, KMeans, PCA, UMAP, LOD) on partitioned Parquet.

``python -m bench.bench_explore --quick``: 20,000 x 64 rows, small fits (a smoke run, a minute or two).
``python -m bench.bench_explore``: 1e6 x 512 float32 rows of the demo image collection, hive-partitioned
by source_dataset/family (generated once under ``--data-dir``, ~2 GB), the sizes emb-explorer users meet.
Every stage runs in this process on ``--threads`` threads; the points table stays in memory, embeddings
are streamed. Per-stage peak RSS of the process tree, sampled by bench._harness.measure(). Results print and go
to ``bench/results/explore[-quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench._harness import RESULTS, measure  # RESULTS honours RAYMAP_BENCH_RESULTS

GIB = 2**30
MODES = {
    "quick": {"n": 20_000, "dim": 64, "chunk_rows": 5_000, "k": 8, "sample": 5_000, "cap": 200, "umap_fit": 2_000},
    "full": {
        "n": 1_000_000,
        "dim": 512,
        "chunk_rows": 65_536,
        "k": 32,
        "sample": 100_000,
        "cap": 2_000,
        "umap_fit": 20_000,
    },
}


def stage(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
    """Run one stage, record seconds, peak RSS and what it reports, and print a line."""
    with measure() as m:
        extra = fn() or {}
    results[name] = {**m, **extra}
    print(f"{name:>14}: {m['seconds']:8.2f} s  peak RSS {m['peak_rss_gib']:6.2f} GiB  {extra}", flush=True)


def make_data(data_dir: Path, cfg: dict[str, int]) -> Path:
    """The demo image collection at the mode's size, generated once and reused."""
    from raymap import datasets

    marker = data_dir / f"explore-{cfg['n']}x{cfg['dim']}.done"
    if not marker.exists():
        t0 = time.perf_counter()
        datasets.image_collection(
            data_dir, n=cfg["n"], dim=cfg["dim"], chunk_rows=cfg["chunk_rows"], n_images=100, n_image_files=10
        )
        marker.write_text("ok\n")
        print(f"generated {cfg['n']} x {cfg['dim']} in {time.perf_counter() - t0:.1f} s under {data_dir}")
    return data_dir / "embeddings"


def run(mode: str, data_dir: Path, threads: int) -> dict[str, Any]:
    import faiss
    from threadpoolctl import threadpool_limits

    from raymap.explore.cluster import cluster_rows, fit_kmeans
    from raymap.explore.filter import open_filtered, read_metadata
    from raymap.explore.lod import level_of_detail
    from raymap.explore.project import project_rows
    from raymap.explore.sample import gather, stratified_rows, uniform_rows

    cfg = MODES[mode]
    path = make_data(data_dir, cfg)
    load_before = os.getloadavg()[0]
    faiss.omp_set_num_threads(threads)
    stages: dict[str, Any] = {}
    state: dict[str, Any] = {}

    def filter_family() -> dict[str, Any]:
        f = open_filtered(path, filter={"family": "Family01"}, columns=["uuid", "genus", "species"])
        read_metadata(f.source, f.columns)
        s = f.stats
        return {
            "rows": s.rows_matched,
            "files_read": f"{s.files_read}/{s.files_total}",
            "share_bytes": round(s.share_read, 4),
        }

    def open_all() -> dict[str, Any]:
        state["f"] = open_filtered(path, columns=["family", "genus"])
        return {"rows": state["f"].source.n_rows, "files": state["f"].stats.files_total}

    def sample() -> dict[str, Any]:
        source = state["f"].source
        rows = uniform_rows(source.n_rows, cfg["sample"], seed=0)
        meta = read_metadata(source, ["family"], rows)
        x = gather(source, rows[: cfg["sample"] // 2], source.chunk_rows)
        strat = stratified_rows(lambda: ((s, t.column("genus")) for s, t in source.iter_tables(["genus"])), cfg["cap"])
        return {"uniform": len(rows), "gathered": x.shape[0], "metadata_rows": meta.num_rows, "stratified": len(strat)}

    def kmeans() -> dict[str, Any]:
        source = state["f"].source
        out = cluster_rows(
            source, np.arange(source.n_rows), cfg["k"], seed=0, batch_rows=source.batch_rows_for("512MiB")
        )
        state["labels"] = out.labels
        return {"backend": out.model.backend, "k": out.model.k, "labelled": len(out.labels)}

    def kmeans_fit(backend: str) -> Callable[[], dict[str, Any]]:
        def fit() -> dict[str, Any]:
            model = fit_kmeans(state["x_fit"], cfg["k"], backend=backend, seed=0)
            return {"rows": len(state["x_fit"]), "inertia": round(model.inertia, 2)}

        return fit

    def project(method: str, fit_rows: int | None) -> Callable[[], dict[str, Any]]:
        def run_projection() -> dict[str, Any]:
            source = state["f"].source
            rows = np.arange(source.n_rows)
            batch_rows = source.batch_rows_for("512MiB")
            out = project_rows(source, rows, method, seed=0, fit_rows=fit_rows, batch_rows=batch_rows)
            state["xy"] = out.coords
            return {
                "backend": out.backend,
                "fitted": len(out.fitted),
                "placed": int(np.isfinite(out.coords[:, 0]).sum()),
            }

        return run_projection

    def umap_compile() -> dict[str, Any]:
        """umap-learn and pynndescent compile with numba on first use: timed apart from the real work."""
        from raymap.explore.project import Projector

        tiny = np.random.default_rng(0).normal(size=(300, cfg["dim"])).astype(np.float32)
        projector = Projector("umap", seed=0)
        projector.fit(tiny)
        projector.transform(tiny[:50])
        return {"rows": len(tiny)}

    def lod() -> dict[str, Any]:
        view = level_of_detail(state["xy"], labels=state["labels"])
        return {"points": len(view.points), "bins": view.density.shape[0]}

    with threadpool_limits(threads):
        stage(stages, "filter", filter_family)
        stage(stages, "open_all", open_all)
        stage(stages, "sample", sample)
        stage(stages, "kmeans", kmeans)
        source = state["f"].source
        state["x_fit"] = gather(source, uniform_rows(source.n_rows, 50_000, seed=1), source.chunk_rows)
        stage(stages, "kmeans_fit_faiss", kmeans_fit("faiss"))
        stage(stages, "kmeans_fit_sklearn", kmeans_fit("sklearn"))
        del state["x_fit"]
        stage(stages, "pca", project("pca", None))
        stage(stages, "umap_compile", umap_compile)
        stage(stages, "umap", project("umap", cfg["umap_fit"]))
        stage(stages, "lod", lod)
    ratio = stages["kmeans_fit_sklearn"]["seconds"] / max(stages["kmeans_fit_faiss"]["seconds"], 1e-9)
    return {
        "mode": mode,
        "machine": {
            "cpus": os.cpu_count(),
            "threads": threads,
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "gpu": "none (CPU backends)",
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: is it quiet?
        },
        "data": {
            "rows": cfg["n"],
            "dim": cfg["dim"],
            "path": str(path),
            "bytes": sum(f.stat().st_size for f in path.rglob("*.parquet")),
        },
        "stages": stages,
        "ratios": {"kmeans_fit_sklearn_over_faiss": round(ratio, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20,000 x 64 smoke run")
    parser.add_argument("--data-dir", default=None, help="where the generated collection lives (reused)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP/faiss threads (default 2)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    data_dir = Path(args.data_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"raymap-bench-explore-{mode}")
    results = run(mode, data_dir, args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"explore{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
