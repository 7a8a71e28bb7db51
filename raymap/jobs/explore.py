"""Explore job: ``python -m raymap.jobs.explore --config job.yaml`` -> the explored points exported to ``out``.

The work is :func:`raymap.explore.explore` (filter, sample, cluster, project); the config holds its
keywords plus ``out``, a .parquet/.csv file that receives every point with its metadata, cluster
and 2-D coordinates. Jobs run on a cluster, so ``use_ray`` defaults to True here: clustering and
projection become Ray tasks that take a GPU when the cluster has one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from raymap.jobs.config import check_keys, config_from_args, keywords_of, run_job

REQUIRED = ("data", "out")


def facade() -> Callable[..., Any]:
    """``raymap.explore.explore``; a clear error where this installation lacks the exploration engine."""
    try:
        from raymap.explore import explore
    except ImportError as e:
        raise RuntimeError(
            f"raymap.explore.explore is not available in this raymap installation ({e}); "
            "install a raymap that includes the exploration engine on the cluster"
        ) from None
    return explore


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    return check_keys(config, ("out", *keywords_of(facade())), REQUIRED, "explore")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raymap.jobs.explore", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="YAML/JSON file: raymap.explore.explore keywords plus out")
    p.add_argument("--data", default=None, help="embeddings to explore (Parquet dataset, .zarr, .h5ad, .npy)")
    p.add_argument("--out", default=None, help=".parquet or .csv file for the explored points")
    return p


def run(config: dict[str, Any]) -> None:
    explore = facade()
    params = check_config(config)
    out = params.pop("out")
    params.setdefault("use_ray", True)
    exploration = explore(**params)
    path = exploration.export(out)
    print(json.dumps(exploration.summary(), indent=2, default=str), flush=True)
    print(f"raymap-result out={path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    flags = lambda args: {"data": args.data, "out": args.out}  # noqa: E731
    return run_job(lambda: run(config_from_args(parser, argv, flags)), "explore")


if __name__ == "__main__":
    sys.exit(main())
