"""Jobs on a real local Ray head (job server, 2 CPUs, 1 simulated GPU): submit, follow, interrupt, resume, bad input.

The head runs as its own process group (raymap.localcluster.LocalCluster); this test process
talks to it over HTTP only, so the session's embedded ``ray_cluster`` driver (used here for the
in-process reference runs) is never asked to join a second cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from raymap.client import Client
from raymap.localcluster import LocalCluster, free_port
from raymap.result import MappingResult
from raymap.store import IncompleteStoreError, MappingStore

pytestmark = pytest.mark.ray
SMALL = {"k": 10, "transfer": {"cell_type": "categorical"}}
# 16 units of 1,024 rows, ~0.1 s each: a window to interrupt a job between commits.
BIG = {"k": 15, "n_shards": 1, "memory_budget": "4MiB"}
JOB_TIMEOUT_S = 240
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """Launched, not yet waited for: its start-up overlaps data generation and the in-process runs."""
    c = LocalCluster(num_cpus=2, num_gpus=1).launch()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def client(cluster):
    return Client(cluster.wait_ready().address)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from raymap import datasets

    return datasets.cell_atlas(
        tmp_path_factory.mktemp("big"), n_ref=12_000, n_query=16_384, dim=64, formats=("parquet",), chunk_rows=4_096
    )


def _map_in_process(query, reference, out, params) -> MappingResult:
    import raymap

    return raymap.map(str(query), str(reference), out, **params)


@pytest.fixture(scope="module")
def small_expected(ray_cluster, atlas, tmp_path_factory):
    out = tmp_path_factory.mktemp("small_expected") / "m.zarr"
    return _map_in_process(atlas.query["parquet"], atlas.reference["parquet"], str(out), SMALL)


@pytest.fixture(scope="module")
def big_expected(ray_cluster, big, tmp_path_factory):
    out = tmp_path_factory.mktemp("big_expected") / "m.zarr"
    return _map_in_process(big.query["parquet"], big.reference["parquet"], str(out), BIG)


@pytest.fixture(scope="module")
def submitted(client, cluster, atlas, tmp_path_factory):
    """Jobs submitted together up front, so their start-ups overlap the tests that wait on other jobs."""
    from ray.job_submission import JobSubmissionClient

    tmp = tmp_path_factory.mktemp("submitted")
    out = str(tmp / "small.zarr")
    small = client.submit_map(str(atlas.query["parquet"]), str(atlas.reference["parquet"]), out, **SMALL)
    assert client.status(small) in ("PENDING", "RUNNING", "SUCCEEDED")
    bad_config = tmp / "bad.yaml"
    bad_config.write_text(yaml.safe_dump({"query": str(atlas.query["parquet"]), "out": "x.zarr", "kk": 3}))
    unknown_key = JobSubmissionClient(cluster.address).submit_job(
        entrypoint=f"python -m raymap.jobs.map --config {bad_config}", entrypoint_num_cpus=0
    )
    missing = tmp / "no" / "such.parquet"
    missing_input = client.submit_map(str(missing), None, str(tmp / "y.zarr"))
    return {"small": (small, out), "unknown_key": unknown_key, "missing_input": (missing_input, str(missing))}


@pytest.fixture(scope="module")
def small_job(client, submitted):
    """The map job submitted through the Client, finished: (job id, output path)."""
    job_id, out = submitted["small"]
    assert client.wait(job_id, timeout=JOB_TIMEOUT_S) == "SUCCEEDED", client.logs(job_id)
    return job_id, out


def assert_same_mapping(a: str, b: str, transferred: tuple[str, ...] = ()) -> None:
    sa, sb = MappingStore(a), MappingStore(b)
    sa.require_complete()
    sb.require_complete()
    for name in ("neighbors/indices", "neighbors/distances", "mapping/data"):
        np.testing.assert_array_equal(sa.array(name)[:], sb.array(name)[:], err_msg=name)
    for field in transferred:
        np.testing.assert_array_equal(MappingResult(a).labels(field), MappingResult(b).labels(field))
        np.testing.assert_array_equal(MappingResult(a).confidence(field), MappingResult(b).confidence(field))


def test_ray_job_submit_cli_matches_in_process(cluster, atlas, small_expected, submitted, tmp_path):
    # `submitted` (after the in-process run): those jobs start while this one runs.
    out = tmp_path / "cli.zarr"
    config = {"query": str(atlas.query["parquet"]), "reference": str(atlas.reference["parquet"]), "out": str(out)}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**config, **SMALL}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    submit = ["ray", "job", "submit", "--address", cluster.address, "--working-dir", str(REPO)]
    entrypoint = ["python", "jobs/map.py", "--config", str(tmp_path / "job.yaml")]
    done = subprocess.run(
        [*submit, "--entrypoint-num-cpus", "0", "--", *entrypoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "raymap-progress phase=weights" in done.stdout
    assert f"raymap-result out={out}" in done.stdout
    assert_same_mapping(str(out), small_expected.path, ("cell_type",))


def test_client_round_trip(client, small_job, small_expected):
    job_id, out = small_job
    logs = client.logs(job_id)
    assert "raymap-progress phase=search" in logs
    progress = client.progress(job_id)
    assert progress["phase"] == "weights"
    assert progress["phases"]["search"]["done"] == progress["phases"]["search"]["total"] == 2_000
    listed = {j["id"]: j for j in client.list()}
    assert listed[job_id]["status"] == "SUCCEEDED"
    assert listed[job_id]["metadata"]["raymap_out"] == out
    assert listed[job_id]["end_time"] >= listed[job_id]["start_time"]
    result = client.result(job_id)
    assert result.path == out
    assert_same_mapping(out, small_expected.path, ("cell_type",))
    assert client.cancel(job_id) is False  # already finished


def test_client_finds_the_job_server_from_a_gcs_address(client, cluster):
    """``RAY_ADDRESS`` inside a cluster is the GCS ``host:port``; resolving it touches this process's Ray
    state, so it runs in a subprocess (this one is a driver of the session's cluster)."""
    code = f"from raymap.client import Client; print(Client({cluster.gcs_address!r}).address)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f":{cluster.dashboard_port}")


def test_shard_actors_get_the_gpu_and_give_it_back(cluster, small_job):
    """``--num-gpus 1`` (no real GPU): actors request num_gpus=1, faiss stays on CPU, the GPU is free after."""
    from ray.autoscaler.v2.sdk import get_cluster_status
    from ray.util.state import list_actors

    _, out = small_job
    assert MappingResult(out).attrs["pool"]["num_gpus"] == 1.0
    actors = list_actors(address=cluster.address, filters=[("class_name", "=", "ShardWorker")], detail=True)
    assert actors
    assert all(a.required_resources.get("GPU") == 1.0 for a in actors)
    assert all(a.state == "DEAD" for a in actors)
    status = get_cluster_status(cluster.gcs_address)
    assert status.total_resources()["GPU"] == 1.0
    assert status.available_resources().get("GPU") == 1.0


def _committed(out: str) -> int:
    """Committed search units of a store; 0 while it does not exist or is still being laid out."""
    try:
        return len(MappingStore(out).committed("search"))
    except (FileNotFoundError, ValueError):
        return 0


def _wait_for_commits(client, job_id: str, out: str, more_than: int = 0) -> int:
    """Wait while the job runs until more than ``more_than`` search units are committed; return the count."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        if _committed(out) > more_than:
            return _committed(out)
        assert client.status(job_id) in ("PENDING", "RUNNING"), client.logs(job_id)
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} committed nothing in {JOB_TIMEOUT_S} s")


def test_interrupted_job_resumes_to_identical_output(client, big, big_expected, tmp_path, capsys):
    """Cancel a job, resume it; SIGKILL the resumed job's driver, resume again (CLI): same output, nothing partial."""
    out = str(tmp_path / "m.zarr")
    submit = lambda **kw: client.submit_map(str(big.query["parquet"]), str(big.reference["parquet"]), out, **BIG, **kw)  # noqa: E731
    expected = MappingStore(big_expected.path)

    first = submit()
    with pytest.raises(TimeoutError):
        client.wait(first, timeout=0.5)
    _wait_for_commits(client, first, out)
    assert client.cancel(first)
    assert client.wait(first, timeout=60) == "STOPPED"
    assert not os.path.exists(f"{out}.lock")  # SIGTERM: the job's finally blocks released the lock

    second = submit(resume=True)
    _wait_for_commits(client, second, out, more_than=_committed(out))
    driver_pid = client.info(second)["driver_pid"]
    os.kill(driver_pid, signal.SIGKILL)
    assert client.wait(second, timeout=60) == "FAILED"
    assert os.path.exists(f"{out}.lock")  # SIGKILL leaves the lock; its pid is dead, so resume takes it

    store = MappingStore(out)
    assert not store.is_complete()
    with pytest.raises(IncompleteStoreError):
        next(MappingResult(out).iter_csr())
    units = store.units()
    for phase, arrays in (("search", ("neighbors/indices", "neighbors/distances")), ("weights", ("mapping/data",))):
        for u in store.committed(phase):  # committed means fully written
            start, stop = units[u]
            for name in arrays:
                np.testing.assert_array_equal(store.array(name)[start:stop], expected.array(name)[start:stop])

    from raymap.cli import main

    flags = ["--k", "15", "--n-shards", "1", "--memory-budget", "4MiB", "--resume", "--wait"]
    data = ["--query", str(big.query["parquet"]), "--reference", str(big.reference["parquet"]), "--out", out]
    assert main(["submit", "map", "--address", client.address, *data, *flags]) == 0
    printed = capsys.readouterr().out
    third = printed.splitlines()[0]
    assert f"{third}: SUCCEEDED" in printed and '"phase": "weights"' in printed
    assert "already committed" in client.logs(third)
    assert_same_mapping(out, big_expected.path)


def test_bad_input_fails_the_job_with_a_clear_message(client, atlas, submitted, tmp_path):
    with pytest.raises(ValueError, match=r"unknown map job config key\(s\) \['kk'\]"):
        client.submit_map(str(atlas.query["parquet"]), None, str(tmp_path / "x.zarr"), kk=3)

    unknown_key = submitted["unknown_key"]
    assert client.wait(unknown_key, timeout=JOB_TIMEOUT_S) == "FAILED"
    assert "unknown map job config key(s) ['kk']" in client.logs(unknown_key)
    missing_input, missing = submitted["missing_input"]
    assert client.wait(missing_input, timeout=JOB_TIMEOUT_S) == "FAILED"
    logs = client.logs(missing_input)
    assert "raymap map job failed: FileNotFoundError" in logs and missing in logs
    with pytest.raises(RuntimeError, match="FAILED"):
        client.result(missing_input)


def test_cli_jobs_commands(cluster, small_job, capsys):
    from raymap.cli import main

    job_id, out = small_job
    for args, expected in (
        (["list"], job_id),
        (["status", job_id], "SUCCEEDED"),
        (["logs", job_id], f"raymap-result out={out}"),
        (["progress", job_id], '"phase": "weights"'),
        (["cancel", job_id], "already finished"),
    ):
        assert main(["jobs", args[0], "--address", cluster.address, *args[1:]]) == 0
        assert expected in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_unreachable_address_fails_fast():
    with pytest.raises(ConnectionError, match=r"no Ray job server at http://127\.0\.0\.1:\d+"):
        Client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match="http"):
        Client("ftp://127.0.0.1:1")
