"""``raymap transfer``: transfer fields (and presence scores) on an existing mapping store, print a summary."""

from __future__ import annotations

import argparse
import json

from raymap.cli._common import parse_mapping


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer", help="transfer reference fields through a finished mapping store")
    p.add_argument("store", help="mapping store written by `raymap map`")
    p.add_argument("--fields", default=None, help="e.g. cell_type=categorical,lineage=categorical,score=numeric")
    p.add_argument("--reference", default=None, help="reference with the metadata (default: the one mapped)")
    p.add_argument("--column", default="emb", help="Parquet embedding column of --reference")
    p.add_argument("--use-rep", default="X_pca", help="AnnData obsm key of --reference")
    p.add_argument("--threshold", type=float, default=0.0, help="label 'unknown' below this confidence")
    p.add_argument("--t", type=int, default=1, help="diffusion steps (self-mapping only)")
    p.add_argument("--symmetrize", default=None, choices=["max", "mean", "union"], help="self-mapping: K vs Kᵀ")
    p.add_argument("--memory-budget", default="1GiB")
    p.add_argument("--presence", action="store_true", help="also compute presence scores of the reference rows")
    p.add_argument("--presence-groupby", default=None, help="transferred categorical field to score per group")
    p.add_argument("--presence-labels", default=None, help="reference column to average presence over")
    p.add_argument("--log1p", action="store_true", help="presence: log1p before clipping and scaling")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raymap.result import MappingResult
    from raymap.sources import open_source

    result = MappingResult(args.store)
    reference = (
        None if args.reference is None else open_source(args.reference, column=args.column, use_rep=args.use_rep)
    )
    fields = parse_mapping(args.fields)
    if not fields and not args.presence:
        raise ValueError("nothing to do: pass --fields and/or --presence")
    if fields:
        result.transfer(
            fields, reference, args.threshold, t=args.t, symmetrize=args.symmetrize, memory_budget=args.memory_budget
        )
    if args.presence:
        result.presence(
            args.presence_groupby, args.presence_labels, reference, log1p=args.log1p, memory_budget=args.memory_budget
        )
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0
