"""What running a mapping as a Ray Job costs over calling raymap.map in-process (prints + writes JSON).

Times: a private local head coming up, one map job end to end (submit -> SUCCEEDED) split into
queueing/start-up and the map itself (from the job's own ``seconds``), and the same map in-process.

    python -m bench.bench_jobs_overhead --quick --json bench/results/jobs_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 x 6,000 rows instead of 50,000 x 100,000")
    parser.add_argument("--json", default="bench/results/jobs_overhead.json")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import raymap
    from raymap import datasets
    from raymap.client import Client
    from raymap.localcluster import LocalCluster
    from raymap.runtime import ensure_ray

    n_query, n_ref = (2_000, 6_000) if args.quick else (50_000, 100_000)
    params = {"k": 30, "transfer": {"cell_type": "categorical"}}
    with tempfile.TemporaryDirectory() as tmp:
        atlas = datasets.cell_atlas(Path(tmp) / "atlas", n_ref=n_ref, n_query=n_query, formats=("parquet",))
        query, reference = str(atlas.query["parquet"]), str(atlas.reference["parquet"])

        t0 = time.perf_counter()
        cluster = LocalCluster(num_cpus=2).start()
        head_s = time.perf_counter() - t0
        try:
            client = Client(cluster.address)
            t0 = time.perf_counter()
            job = client.submit_map(query, reference, f"{tmp}/job.zarr", **params)
            status = client.wait(job, timeout=3600, poll_s=0.25)
            job_s = time.perf_counter() - t0
            job_map_s = float(client.result(job).attrs["seconds"]) if status == "SUCCEEDED" else None
        finally:
            cluster.stop()

        t0 = time.perf_counter()
        ensure_ray(num_cpus=2)
        ray_init_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        in_process = raymap.map(query, reference, f"{tmp}/inproc.zarr", **params)
        in_process_s = time.perf_counter() - t0

    report = {
        "rows": {"query": n_query, "reference": n_ref, "dim": 50, "k": 30},
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "job_status": status,
        "head_start_s": round(head_s, 2),
        "job_end_to_end_s": round(job_s, 2),
        "job_map_s": job_map_s,
        "job_overhead_s": round(job_s - (job_map_s or 0.0), 2),
        "in_process_ray_init_s": round(ray_init_s, 2),
        "in_process_map_s": round(in_process_s, 2),
        "in_process_map_recorded_s": float(in_process.attrs["seconds"]),
    }
    print(json.dumps(report, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
