"""``raymap serve``: the web UI (Gradio on Ray Serve) on a running Ray, or on a local one it starts."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web UI: submit and follow map jobs, explore embeddings (Ray Serve + Gradio)")
    p.add_argument(
        "--data-root",
        action="append",
        required=True,
        metavar="DIR",
        help="folder the UI may read and write (repeat for several); nothing outside is reachable",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument(
        "--address",
        default="auto",
        help="'auto' (default): join the running Ray if its job server answers, else start a local Ray; "
        "'local': always start a private local Ray; or a cluster address host:port to join",
    )
    p.add_argument("--jobs-address", default=None, help="job server URL when joining (default http://127.0.0.1:8265)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray this command starts")
    p.set_defaults(func=run)


def connect(address: str, jobs_address: str | None, num_cpus: int | None) -> tuple[str, Any]:
    """Join a cluster (or start one); return the job server URL and the LocalCluster we own, if any."""
    import ray

    from raymap.client import DEFAULT_ADDRESS, Client
    from raymap.localcluster import LocalCluster

    if address != "local":
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            if address != "auto":
                raise RuntimeError(f"no Ray cluster at {address}: {e}") from None
            log.info("no running Ray found; starting a local one")
        else:
            jobs = jobs_address or DEFAULT_ADDRESS
            try:
                Client(jobs)
            except ConnectionError as e:
                if address != "auto":
                    raise RuntimeError(f"joined Ray at {address} but its job server is unreachable: {e}") from None
                log.warning("the running Ray has no job server at %s; starting a private local Ray instead", jobs)
                ray.shutdown()
            else:
                return jobs, None
    cluster = LocalCluster(num_cpus=num_cpus).start()
    ray.init(address=cluster.gcs_address, log_to_driver=False)
    return cluster.address, cluster


def run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve as ray_serve

    from serve.app import APP_NAME
    from serve.app import run as run_ui
    from serve.context import UIConfig
    from serve.paths import DataRoots

    roots = DataRoots.parse(args.data_root)  # fail before starting anything
    jobs, cluster = connect(args.address, args.jobs_address, args.num_cpus)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        url = run_ui(UIConfig(tuple(roots.display_roots()), jobs), args.host, args.port)
        print(f"raymap UI: {url}  (jobs: {jobs}; Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        if cluster is None:
            ray_serve.delete(APP_NAME)  # a shared cluster keeps its other Serve apps
        ray.shutdown()
        if cluster is not None:
            cluster.stop()
    return 0
