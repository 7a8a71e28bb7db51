"""Out of core: peak RSS of the whole process tree stays flat as the query grows 1e6 -> 3e7 rows.

    python -m bench.bench_outofcore [--quick] [--sizes 1e6,3e6,1e7,3e7] [--n-ref 1e6]

One reference (IVF index built once), queries of growing size generated to disk in chunks,
``memory_budget="2GiB"``; each size maps in a fresh subprocess (fresh Ray) that measures its own
process tree. The full run (to 3e7 rows, ~6 GB of query, an ~11 GB neighbour table) takes about
an hour on 2 cores; ``--quick`` maps 2e4 and 6e4 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from bench._harness import measure, run_fresh, write_record
from bench.bench_overhead import DATA


def map_once(root: Path, n_query: int, budget: str) -> dict[str, float]:
    import raymap

    out = root / f"map-{n_query}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    with measure() as m:
        res = raymap.map(
            root / f"query-{n_query}.parquet",
            root / "reference.parquet",
            out,
            k=30,
            index_dir=root / "index",
            memory_budget=budget,
            validate=False,
        )
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out, ignore_errors=True)  # 1e7 x 30 neighbours is 3.6 GB: keep the disk free
    return {
        **m,
        "rows_per_s": round(n_query / m["seconds"]),
        "store_gib": round(size / 2**30, 3),
        "index": res.attrs["index_factory"],
        "nprobe": res.attrs["nprobe"],
        "recall": res.attrs["index_recall"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="1e6,3e6,1e7,3e7")
    ap.add_argument("--n-ref", type=float, default=1e6)
    ap.add_argument("--memory-budget", default="2GiB")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [20_000, 60_000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    n_ref = 20_000 if args.quick else int(args.n_ref)
    root = DATA / f"outofcore-{n_ref}"
    if args.one:
        print(json.dumps(map_once(root, args.one, args.memory_budget)))
        return 0
    from raymap import datasets
    from raymap.index import IndexSpec, build_index
    from raymap.sources import open_source

    for n in sizes:  # the query at each size; the reference once (generated beside a 16-row stub)
        if not (root / f"query-{n}.parquet").exists():
            atlas = datasets.cell_atlas(root / f"gen-{n}", n_ref=16, n_query=n, formats=("parquet",))
            os.replace(atlas.query["parquet"], root / f"query-{n}.parquet")
    if not (root / "reference.parquet").exists():
        atlas = datasets.cell_atlas(root / "gen-ref", n_ref=n_ref, n_query=16, formats=("parquet",))
        os.replace(atlas.reference["parquet"], root / "reference.parquet")
    build_index(
        open_source(root / "reference.parquet"),
        root / "index",
        IndexSpec("auto"),
        k=30,
        tuning_source=open_source(root / f"query-{sizes[0]}.parquet"),
    )
    figures = {}
    for n in sizes:
        one = ["--one", str(n), "--n-ref", str(n_ref), "--memory-budget", args.memory_budget]
        figures[str(n)] = run_fresh("bench.bench_outofcore", one + (["--quick"] if args.quick else []))
        print(n, figures[str(n)], flush=True)
    peaks = [f["peak_rss_gib"] for f in figures.values()]
    figures["peak_rss_spread"] = round(max(peaks) / min(peaks) - 1, 3)
    line = (
        f"out-of-core: query {sizes[0]:,} -> {sizes[-1]:,} rows, peak RSS {min(peaks):.2f}-{max(peaks):.2f} GiB "
        f"(spread {figures['peak_rss_spread']:.1%}), budget {args.memory_budget}"
    )
    write_record(
        "outofcore",
        {"sizes": sizes, "n_ref": n_ref, "k": 30, "memory_budget": args.memory_budget},
        figures,
        line,
        args.quick,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
