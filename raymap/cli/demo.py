"""``raymap demo``: generate a demo atlas, map query onto reference on an embedded Ray, transfer labels."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from raymap.cli._common import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on generated data (embedded local Ray)")
    p.add_argument("--out", default="demo_out", help="folder for demo data and results")
    p.add_argument("--n-ref", type=int, default=100_000)
    p.add_argument("--n-query", type=int, default=50_000)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--kernel", default="gauss")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import raymap
    from raymap import datasets
    from raymap.sources import open_source

    out = Path(args.out)
    t0 = time.perf_counter()
    atlas = datasets.cell_atlas(out / "atlas", n_ref=args.n_ref, n_query=args.n_query)
    print(
        f"demo data: {args.n_ref:,} reference and {args.n_query:,} query cells (50-D) in {atlas.root} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    result = raymap.map(
        atlas.query["parquet"],
        atlas.reference["parquet"],
        out / "mapping.zarr",
        k=args.k,
        kernel=args.kernel,
        overwrite=True,
        transfer={"cell_type": "categorical", "lineage": "categorical", "score": "numeric"},
        progress=progress_bar(),
    )
    truth = open_source(atlas.query["parquet"]).read_column("cell_type").astype(str)
    pred = result.labels("cell_type")
    known = ~np.isin(truth, atlas.query_only_types)
    unknown_share = float((pred[~known] == "unknown").mean()) if (~known).any() else 0.0
    summary = result.summary()
    summary["cell_type_accuracy_on_shared_types"] = round(float((pred == truth)[known].mean()), 4)
    summary["query_only_cells"] = int((~known).sum())
    summary["query_only_cells_low_confidence"] = round(
        float((result.confidence("cell_type")[~known] < 0.5).mean()) if (~known).any() else 0.0, 4
    )
    summary["query_only_predicted_unknown"] = round(unknown_share, 4)
    print(json.dumps(summary, indent=2, default=str))
    print(f"mapping store (zarr): {result.path}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; outputs under {out.resolve()}")
    return 0
