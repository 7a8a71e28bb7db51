"""``raymap build-index``: build (or reuse) a sharded faiss index of a reference, here and now."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from raymap.jobs.build_index import add_arguments

    p = sub.add_parser("build-index", help="build a sharded index of a reference (reused by map --index-dir)")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raymap.jobs.build_index import flags_to_config
    from raymap.jobs.build_index import run as build

    build(flags_to_config(args))
    return 0
