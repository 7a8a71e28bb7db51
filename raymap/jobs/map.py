"""Map job: ``python -m raymap.jobs.map --config job.yaml`` (or ``raymap map`` flags) -> mapping store + transfer."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from raymap.jobs.config import check_keys, config_from_args, keywords_of, run_job
from raymap.jobs.progress import ProgressPrinter

REQUIRED = ("query", "out")


def allowed_keys() -> tuple[str, ...]:
    """Config keys: exactly the keywords of :func:`raymap.map` that make sense in a file."""
    from raymap.mapper import map as raymap_map

    return keywords_of(raymap_map, drop=("progress",))


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    return check_keys(config, allowed_keys(), REQUIRED, "map")


def build_parser() -> argparse.ArgumentParser:
    from raymap.cli.map import add_arguments

    p = argparse.ArgumentParser(prog="python -m raymap.jobs.map", description=__doc__)
    p.add_argument("--config", default=None, help="YAML/JSON file whose keys are raymap.map keywords")
    add_arguments(p, required=False)
    return p


def run(config: dict[str, Any]) -> None:
    """Map, print progress lines while running and the result summary at the end."""
    import raymap

    config = check_config(config)
    result = raymap.map(**config, progress=ProgressPrinter())
    print(json.dumps(result.summary(), indent=2, default=str), flush=True)
    print(f"raymap-result out={result.path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from raymap.cli.map import map_kwargs

    parser = build_parser()
    return run_job(lambda: run(config_from_args(parser, argv, map_kwargs)), "map")


if __name__ == "__main__":
    sys.exit(main())
