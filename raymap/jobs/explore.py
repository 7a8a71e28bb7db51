"""Explore job: ``python -m raymap.jobs.explore --config job.yaml`` -> a batch exploration written to ``out``.

The work is :func:`raymap.explore.explore` (filter, sample, cluster, project); this module only
checks the config against that function's keywords, prints progress lines and the result path.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from typing import Any

from raymap.jobs.config import check_keys, config_from_args, keywords_of, run_job
from raymap.jobs.progress import ProgressPrinter

REQUIRED = ("source", "out")


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
    keys = (*REQUIRED, *keywords_of(facade(), drop=(*REQUIRED, "progress")))
    return check_keys(config, keys, REQUIRED, "explore")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raymap.jobs.explore", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="YAML/JSON file whose keys are raymap.explore.explore keywords")
    p.add_argument("--source", default=None, help="embeddings to explore (Parquet dataset, .zarr, .h5ad, .npy)")
    p.add_argument("--out", default=None, help="where the exploration result is written")
    return p


def run(config: dict[str, Any]) -> None:
    explore = facade()
    config = check_config(config)
    if "progress" in inspect.signature(explore).parameters:
        config["progress"] = ProgressPrinter()
    result = explore(**config)
    summary = result.summary() if hasattr(result, "summary") else {"result": repr(result)}
    print(json.dumps(summary, indent=2, default=str), flush=True)
    print(f"raymap-result out={config['out']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    flags = lambda args: {"source": args.source, "out": args.out}  # noqa: E731
    return run_job(lambda: run(config_from_args(parser, argv, flags)), "explore")


if __name__ == "__main__":
    sys.exit(main())
