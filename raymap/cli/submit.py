"""``raymap submit map|build-index|explore``: run a raymap job on a Ray cluster through its job server."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from raymap.jobs.config import load_config

FOLLOW_POLL_S = 2.0


def add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="job server, http://host:8265 (default: RAY_ADDRESS or local 8265)")


def register(sub: argparse._SubParsersAction) -> None:
    from raymap.cli.map import add_arguments as add_map
    from raymap.jobs.build_index import add_arguments as add_build

    p = sub.add_parser("submit", help="submit a map / build-index / explore job to a Ray cluster")
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, help_text, add in (
        ("map", "raymap map as a Ray job", lambda q: add_map(q, required=False)),
        ("build-index", "raymap build-index as a Ray job", add_build),
        ("explore", "raymap.explore.explore as a Ray job, points exported to --out", None),
    ):
        q = kinds.add_parser(kind, help=help_text)
        add_address(q)
        q.add_argument("--config", default=None, help="YAML/JSON job config instead of flags")
        q.add_argument(
            "--wait", action="store_true", help="follow progress until the job ends; exit 1 unless it succeeds"
        )
        q.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
        if add is not None:
            add(q)
        else:
            q.add_argument("--data", default=None, help="embeddings to explore")
            q.add_argument("--out", default=None, help=".parquet/.csv file for the explored points")
        q.set_defaults(func=run)
        q.set_defaults(flag_defaults=vars(q.parse_args([])))


def _flags_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.kind == "map":
        from raymap.cli.map import map_kwargs

        return map_kwargs(args)
    if args.kind == "build-index":
        from raymap.jobs.build_index import flags_to_config

        return flags_to_config(args)
    return {"data": args.data, "out": args.out}


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The job config from ``--config`` or from flags; both at once is refused, not merged."""
    flags = _flags_config(args)
    if not args.config:
        return flags
    unset = _flags_config(argparse.Namespace(**{**args.flag_defaults, "kind": args.kind}))
    given = sorted(k for k in flags if flags[k] != unset[k])
    if given:
        raise ValueError(f"pass either --config or job flags, not both (got --config and {given})")
    return load_config(args.config)


def run(args: argparse.Namespace) -> int:
    from raymap.client import Client

    config = _config(args)
    client = Client(args.address)
    if args.kind == "map":
        job_id = client.submit_map(**config)
    elif args.kind == "build-index":
        job_id = client.submit_build_index(config.pop("reference"), config.pop("out"), **config)
    else:
        job_id = client.submit_explore(config.pop("data"), config.pop("out"), **config)
    print(job_id, flush=True)
    if not args.wait:
        return 0
    status = follow(client, job_id, args.timeout)
    if status != "SUCCEEDED":
        print("\n".join(client.logs(job_id).splitlines()[-20:]), file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def follow(client: Any, job_id: str, timeout: float | None) -> str:
    """Print each new progress state until the job ends; return the final status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: dict[str, Any] = {}
    while True:
        status = client.status(job_id)
        progress = {k: v for k, v in client.progress(job_id).items() if k != "phases"}
        if progress and progress != last:
            print(json.dumps(progress), flush=True)
            last = progress
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            print(f"{job_id}: {status}", flush=True)
            return str(status)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} is still {status} after {timeout} s (it keeps running)")
        time.sleep(FOLLOW_POLL_S)
