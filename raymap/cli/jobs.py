"""``raymap jobs list|status|logs|progress|wait|cancel``: follow and manage jobs on a Ray cluster."""

from __future__ import annotations

import argparse
import json
import time

from raymap.cli.submit import add_address, follow


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list, inspect and cancel jobs on a Ray cluster")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("list", help="all jobs, newest first")
    add_address(q)
    q.set_defaults(func=run)
    for action, help_text in (
        ("status", "PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED"),
        ("logs", "the job's driver output"),
        ("progress", "the latest progress line as JSON"),
        ("wait", "follow progress until the job ends; exit 1 unless it succeeds"),
        ("cancel", "stop the job (its committed units stay; resume with --resume)"),
    ):
        q = actions.add_parser(action, help=help_text)
        add_address(q)
        q.add_argument("job_id")
        if action == "wait":
            q.add_argument("--timeout", type=float, default=None)
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from raymap.client import Client

    client = Client(args.address)
    if args.action == "list":
        for job in client.list():
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["start_time"] or 0))
            kind = job["metadata"].get("raymap_kind", "-")
            print(f"{job['id']}  {job['status']:<9}  {started}  {kind:<11}  {job['entrypoint']}")
    elif args.action == "status":
        print(client.status(args.job_id))
    elif args.action == "logs":
        print(client.logs(args.job_id), end="")
    elif args.action == "progress":
        print(json.dumps(client.progress(args.job_id), indent=2))
    elif args.action == "wait":
        return 0 if follow(client, args.job_id, args.timeout) == "SUCCEEDED" else 1
    elif args.action == "cancel":
        print("stopped" if client.cancel(args.job_id) else "already finished")
    return 0
