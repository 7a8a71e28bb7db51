"""``raymap map``: map a query onto a reference out of core, optionally transfer fields."""

from __future__ import annotations

import argparse
import json
from typing import Any

from raymap.cli._common import parse_mapping, progress_bar


def add_map_arguments(p: argparse.ArgumentParser) -> None:
    """Mapping options, shared with ``raymap demo`` and the job entry point."""
    p.add_argument("--k", type=int, default=30, help="neighbours per query row (default 30)")
    p.add_argument("--kernel", default="gauss", help="gauss, scarches, inverse_distance, equal, gauss_local")
    p.add_argument("--index", default="auto", help="faiss factory string or 'auto'")
    p.add_argument("--metric", default="l2", choices=["l2", "cosine"])
    p.add_argument("--nprobe", type=int, default=None, help="IVF probes (default: tuned for recall >= 0.95)")
    p.add_argument("--n-shards", type=int, default=None)
    p.add_argument("--memory-budget", default="2GiB")
    p.add_argument("--backend", default="auto", help="auto, faiss-cpu, faiss-gpu, torch-exact")


def add_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Every ``raymap map`` flag; ``required=False`` where a job config file may give them instead."""
    p.add_argument("--query", required=required, help="Parquet file/folder, .zarr, .h5ad or .npy")
    p.add_argument("--reference", default=None, help="as --query; omit to self-map")
    p.add_argument("--out", required=required, help="zarr store to write")
    p.add_argument("--index-dir", default=None, help="reuse/build the index here (default <out>.index)")
    add_map_arguments(p)
    p.add_argument("--column", default="emb", help="Parquet embedding column")
    p.add_argument("--use-rep", default="X_pca", help="AnnData obsm key or X")
    p.add_argument("--transfer", default=None, help="e.g. cell_type=categorical,score=numeric")
    p.add_argument("--keep-self", action="store_true", help="self-mapping: keep each row as its own neighbour")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--overwrite", action="store_true")
    group.add_argument("--resume", action="store_true", help="continue a killed job from its committed units")


def map_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Parsed flags -> ``raymap.map`` keywords (also a map job's config keys)."""
    return {
        "query": args.query,
        "reference": args.reference,
        "out": args.out,
        "k": args.k,
        "kernel": args.kernel,
        "index": args.index,
        "metric": args.metric,
        "nprobe": args.nprobe,
        "n_shards": args.n_shards,
        "index_dir": args.index_dir,
        "backend": args.backend,
        "memory_budget": args.memory_budget,
        "exclude_self": not args.keep_self,
        "overwrite": args.overwrite,
        "resume": args.resume,
        "transfer": parse_mapping(args.transfer),
        "column": args.column,
        "use_rep": args.use_rep,
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="map a query onto a reference (kNN + kernel + mapping store)")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import raymap

    result = raymap.map(**map_kwargs(args), progress=progress_bar())
    print(json.dumps(result.summary(), indent=2, default=str))
    print(f"mapping store: {result.path}")
    return 0
