"""``raymap explore``: filter, sample, cluster and project an embedding collection; write the points table."""

from __future__ import annotations

import argparse
import json

from raymap.cli._common import parse_names


def _k(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="filter, sample, cluster and project embeddings; write points + summary")
    p.add_argument("--data", required=True, help="Parquet file/folder (hive partitions), .zarr, .h5ad or .npy")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="COL=V[,V...]",
        help="keep rows whose COL is one of the values; repeat for AND (pushed down into the scan)",
    )
    p.add_argument("--columns", default=None, help="metadata columns to keep, comma-separated (default: all)")
    p.add_argument("--sample", type=int, default=None, help="uniform sample size, or the cap per value with --stratify")
    p.add_argument("--stratify", default=None, help="metadata column to stratify the sample by")
    p.add_argument("--clusters", type=_k, default=None, help="KMeans k, or 'auto' to pick k by silhouette")
    p.add_argument("--cluster-backend", default="auto", help="auto, faiss, faiss-gpu, cuml, sklearn")
    p.add_argument("--project", default="pca", choices=["pca", "umap", "tsne", "none"])
    p.add_argument("--project-backend", default="auto", help="auto, sklearn, umap-learn, opentsne, cuml")
    p.add_argument("--fit-rows", type=int, default=None, help="rows to fit KMeans/projection on (default per step)")
    p.add_argument("--composition", default=None, help="print per-cluster shares of this metadata column")
    p.add_argument("--column", default="emb", help="Parquet embedding column")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-budget", default="512MiB")
    p.add_argument("--ray", action="store_true", help="run clustering/projection as Ray tasks (GPU when there is one)")
    p.add_argument("--out", default=None, help="write the points table to .parquet or .csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raymap.explore import explore, parse_filter_text

    result = explore(
        args.data,
        filter=parse_filter_text(args.filter, args.data) if args.filter else None,
        sample=args.sample,
        stratify=args.stratify,
        cluster=args.clusters,
        project=None if args.project == "none" else args.project,
        columns=parse_names(args.columns),
        column=args.column,
        cluster_backend=args.cluster_backend,
        project_backend=args.project_backend,
        fit_rows=args.fit_rows,
        seed=args.seed,
        memory_budget=args.memory_budget,
        use_ray=args.ray,
    )
    print(json.dumps(result.summary(), indent=2, default=str))
    if args.composition:
        print(result.composition(args.composition, top=3).to_string(index=False))
    if args.out:
        print(f"points table: {result.export(args.out)}")
    return 0
