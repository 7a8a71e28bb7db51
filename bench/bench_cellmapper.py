"""raymap vs CellMapper (PyPI) end to end: kNN + gauss kernel + label transfer, side by side.

    python -m bench.bench_cellmapper [--quick] [--n N]

Each contender runs in a fresh subprocess that measures its own process tree (driver + Ray),
on the same demo atlas (reference = query = N cells, 50-D, k = 30, gauss kernel):
raymap with a Flat index and with ``index="auto"``, CellMapper with its CPU kNN backends
(faiss-cpu IndexFlatL2, exact; pynndescent, approximate — the faster one at 1e6), each with
``only_yx=True`` so it computes only query->reference like raymap. Exact search at 1e6 = 1e6 is
1e12 distance pairs (~30 min per contender on 2 cores): ``--contenders`` picks who runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench._harness import FreshRunError, measure, run_fresh, write_record
from bench.bench_overhead import DATA

CONTENDERS = ("raymap-flat", "raymap-auto", "cellmapper-faiss", "cellmapper-pynndescent")
PAIRS = (("raymap-flat", "cellmapper-faiss"), ("raymap-auto", "cellmapper-pynndescent"))
KNN_METHOD = {"cellmapper-faiss": "faiss-cpu", "cellmapper-pynndescent": "pynndescent"}


def _truth(root: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    truth = pq.read_table(root / "query.parquet", columns=["cell_type"]).column(0).to_numpy(zero_copy_only=False)
    ref_types = set(pq.read_table(root / "reference.parquet", columns=["cell_type"]).column(0).to_pylist())
    return truth.astype(str), np.isin(truth, list(ref_types))


def run_one(name: str, root: Path, k: int) -> dict[str, float]:
    """One contender, in this process; returns time, peak tree RSS and accuracy on shared types."""
    truth, shared = _truth(root)
    with measure() as m:
        if name.startswith("raymap"):
            import raymap

            res = raymap.map(
                root / "query.parquet",
                root / "reference.parquet",
                root / f"{name}.zarr",
                k=k,
                kernel="gauss",
                index="Flat" if name == "raymap-flat" else "auto",
                overwrite=True,
                index_dir=root / f"{name}.index",
                transfer={"cell_type": "categorical"},
            )
            pred = res.labels("cell_type")
        else:
            import anndata as ad
            from cellmapper import CellMapper

            query, ref = ad.read_h5ad(root / "query.h5ad"), ad.read_h5ad(root / "reference.h5ad")
            cm = CellMapper(query, ref)
            cm.map(
                obs_keys="cell_type",
                n_neighbors=k,
                use_rep="X_pca",
                knn_method=KNN_METHOD[name],
                only_yx=True,
                kernel_method="gauss",
            )
            pred = query.obs["cell_type_pred"].astype(str).to_numpy()
    return {**m, "accuracy": round(float((pred == truth)[shared].mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=100_000, help="reference = query cells")
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--contenders", help="comma-separated subset of " + ", ".join(CONTENDERS) + " (default: all)")
    ap.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 5_000
    root = DATA / f"cellmapper-{args.n}"
    if args.one:
        print(json.dumps(run_one(args.one, root, args.k)))
        return 0
    from raymap import datasets

    if not (root / "query.h5ad").exists():
        datasets.cell_atlas(root, args.n, args.n, formats=("parquet", "h5ad"))
    figures: dict[str, dict[str, float]] = {}
    # --quick leaves out pynndescent: its numba compile alone outlasts the smoke run
    contenders = (
        args.contenders.split(",")
        if args.contenders
        else [c for c in CONTENDERS if not (args.quick and "nndescent" in c)]
    )
    if unknown := set(contenders) - set(CONTENDERS):
        ap.error(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    for name in contenders:
        try:
            figures[name] = run_fresh("bench.bench_cellmapper", ["--one", name, "--n", str(args.n), "--k", str(args.k)])
        except FreshRunError as e:
            figures[name] = {"error": e.stderr.strip().splitlines()[-1] if e.stderr.strip() else "failed"}
    for ours, theirs in PAIRS:  # exact vs exact, approximate vs approximate
        a, b = figures.get(ours, {}), figures.get(theirs, {})
        if "seconds" in a and "seconds" in b:
            figures[f"ratios_{ours}_over_{theirs}"] = {
                "time": round(a["seconds"] / b["seconds"], 3),
                "peak_rss": round(a["peak_rss_gib"] / b["peak_rss_gib"], 3),
                "accuracy_points": round(100 * (a["accuracy"] - b["accuracy"]), 2),
            }
    line = f"cellmapper vs raymap at n={args.n:,}: " + "; ".join(
        f"{k} {v.get('seconds', '?')} s, {v.get('peak_rss_gib', '?')} GiB, acc {v.get('accuracy', v.get('error'))}"
        for k, v in figures.items()
        if k in CONTENDERS
    )
    write_record(
        "cellmapper" if args.quick else f"cellmapper-{args.n}",
        {"n_ref": args.n, "n_query": args.n, "k": args.k, "kernel": "gauss", "dim": 50},
        figures,
        line,
        args.quick,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
