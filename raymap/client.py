"""Client: submit raymap jobs to a Ray cluster's job server and follow them (status, logs, progress, result)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from raymap.jobs.progress import parse_progress
from raymap.localcluster import LocalCluster
from raymap.result import MappingResult

log = logging.getLogger(__name__)
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
CONNECT_TIMEOUT_S = 5.0
AGENT_WAIT_S = 60.0
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
KIND, OUT = "raymap_kind", "raymap_out"  # job metadata keys
# Path-valued job parameters: relative paths are made absolute against the client's working directory.
PATH_KEYS = ("query", "reference", "out", "index_dir", "data", "images")


class Client:
    """A raymap handle on a Ray job server (the dashboard address, ``http://host:8265``).

    Jobs run ``python -m raymap.jobs.<kind> --config job.json`` with the cluster's ``python``, so
    raymap must be installed on the cluster (``cluster.yaml`` does it; :meth:`local` uses this
    interpreter). Data paths are read and written by the cluster: pass paths that exist there
    (shared or object storage on a real cluster); :meth:`result` reads the output store from
    this machine, so it must see the same path.

    Parameters
    ----------
    address
        ``http(s)://host:port`` of the job server, a ``ray://`` client address, or a cluster's
        ``host:port`` GCS address (what ``RAY_ADDRESS`` holds inside a cluster), which Ray resolves
        to its job server. ``None`` uses ``RAY_ADDRESS`` when it is set, else :data:`DEFAULT_ADDRESS`.
    """

    def __init__(self, address: str | None = None, *, _cluster: LocalCluster | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
        if "://" not in address:
            address = _job_server_of(address)
        _check_reachable(address)
        self.address = address
        self.cluster = _cluster
        with _explicit_address():
            try:
                self._jobs = JobSubmissionClient(address)
            except ConnectionError as e:
                raise ConnectionError(f"no Ray job server at {address}: {e}") from None

    @classmethod
    def local(cls, num_cpus: int | None = None, num_gpus: int | None = None) -> Client:
        """Start a private local Ray head with the job server and return a client that owns it.

        Stop it with :meth:`close` (or use the client as a context manager). ``num_gpus`` may be
        set without a GPU to simulate one for scheduling.
        """
        cluster = LocalCluster(num_cpus=num_cpus, num_gpus=num_gpus).start()
        try:
            return cls(cluster.address, _cluster=cluster)
        except BaseException:
            cluster.stop()
            raise

    def close(self) -> None:
        """Stop the local cluster this client started, if any, after stopping its running jobs."""
        if self.cluster is None:
            return
        try:
            for job in self.list():
                if job["status"] not in TERMINAL:
                    self.cancel(job["id"])
        except OSError as e:  # the head is already gone: nothing left to cancel
            log.warning("could not cancel the local cluster's jobs: %s", e)
        finally:
            self.cluster.stop()
            self.cluster = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- submit ------------------------------------------------------------------------
    def submit_map(self, query: str, reference: str | None = None, out: str = "mapping.zarr", **map_kwargs: Any) -> str:
        """Submit ``raymap.map(query, reference, out, **map_kwargs)`` as a job; returns its id.

        ``map_kwargs`` are :func:`raymap.map` keywords (``k``, ``kernel``, ``transfer``, ``resume`` ...),
        checked here so a typo fails before anything is submitted.
        """
        from raymap.jobs.map import check_config

        config = check_config({"query": query, "reference": reference, "out": out, **map_kwargs})
        return self._submit("map", config)

    def submit_build_index(self, reference: str, index_dir: str, **index_kwargs: Any) -> str:
        """Submit an index build of ``reference`` into ``index_dir`` (reused by later maps via ``index_dir``)."""
        from raymap.jobs.build_index import check_config

        config = check_config({"reference": reference, "out": index_dir, **index_kwargs})
        return self._submit("build_index", config)

    def submit_explore(self, data: str, out: str, **explore_kwargs: Any) -> str:
        """Submit :func:`raymap.explore.explore` of ``data`` (filter, sample, cluster, project) as a job.

        Every point, with metadata, cluster and 2-D coordinates, is exported to ``out`` (.parquet/.csv).
        """
        from raymap.jobs.explore import check_config

        config = check_config({"data": data, "out": out, **explore_kwargs})
        return self._submit("explore", config)

    def _submit(self, kind: str, config: dict[str, Any]) -> str:
        config = {k: _absolute(v) if k in PATH_KEYS else v for k, v in config.items()}
        with tempfile.TemporaryDirectory(prefix="raymap-job-") as staging:
            with open(os.path.join(staging, "job.json"), "w") as f:
                json.dump(config, f, indent=2)
            job_id = self._submit_when_agent_is_up(
                entrypoint=entrypoint_for(kind, "job.json"),
                runtime_env={"working_dir": staging, "env_vars": {"PYTHONUNBUFFERED": "1"}},
                metadata={KIND: kind, OUT: str(config.get("out", ""))},
                entrypoint_num_cpus=0,
            )
        log.info("submitted %s job %s to %s", kind, job_id, self.address)
        return str(job_id)

    def _submit_when_agent_is_up(self, **job: Any) -> str:
        """A head that just started serves HTTP before its job agent registers: retry that one refusal."""
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                return str(self._jobs.submit_job(**job))
            except RuntimeError as e:
                if "No available agent" not in str(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    # --- follow ------------------------------------------------------------------------
    def status(self, job_id: str) -> str:
        """``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED`` or ``STOPPED``."""
        return str(self._jobs.get_job_status(job_id).value)

    def logs(self, job_id: str) -> str:
        return str(self._jobs.get_job_logs(job_id))

    def progress(self, job_id: str) -> dict[str, Any]:
        """The job's latest progress: ``phase, done, total, fraction, rows_per_s, eta_s`` and ``phases``.

        Empty until the job prints its first progress line (index build, start-up).
        """
        return parse_progress(self.logs(job_id))

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 1.0) -> str:
        """Block until the job ends; return its final status. Raises TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.status(job_id)) not in TERMINAL:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {status} after {timeout} s")
            time.sleep(poll_s)
        return status

    def cancel(self, job_id: str) -> bool:
        """Stop a job (SIGTERM, then SIGKILL); False when it had already ended."""
        return bool(self._jobs.stop_job(job_id))

    def info(self, job_id: str) -> dict[str, Any]:
        return _job_dict(self._jobs.get_job_info(job_id))

    def list(self) -> list[dict[str, Any]]:
        """All jobs of the cluster, newest first: ``id, status, start_time, end_time, entrypoint, metadata``."""
        jobs = [_job_dict(j) for j in self._jobs.list_jobs()]
        return sorted(jobs, key=lambda j: j["start_time"] or 0.0, reverse=True)

    def result(self, job_id: str) -> MappingResult:
        """The finished map job's :class:`MappingResult`, opened from the store path in its metadata."""
        info = self.info(job_id)
        kind = info["metadata"].get(KIND)
        if kind != "map":
            raise ValueError(f"job {job_id} is a {kind or 'non-raymap'} job; only map jobs have a MappingResult")
        if info["status"] != "SUCCEEDED":
            tail = "\n".join(self.logs(job_id).splitlines()[-10:])
            raise RuntimeError(f"job {job_id} is {info['status']}, not SUCCEEDED: {info['message']}\n{tail}")
        return MappingResult(info["metadata"][OUT])


def _job_dict(job: Any) -> dict[str, Any]:
    def seconds(ms: int | None) -> float | None:
        return ms / 1000.0 if ms else None

    return {
        "id": job.submission_id or job.job_id,
        "type": str(getattr(job.type, "value", job.type)),  # SUBMISSION, or DRIVER for a plain ray.init() script
        "status": str(job.status.value),
        "start_time": seconds(job.start_time),
        "end_time": seconds(job.end_time),
        "entrypoint": job.entrypoint,
        "metadata": dict(job.metadata or {}),
        "message": job.message or "",
        "driver_pid": int(job.driver_info.pid) if getattr(job, "driver_info", None) else None,
    }


def _absolute(value: Any) -> Any:
    if isinstance(value, str) and "://" not in value:
        return os.path.abspath(os.path.expanduser(value))
    return value


def _job_server_of(gcs_address: str) -> str:
    """The job server URL a cluster publishes in its GCS, as Ray resolves a scheme-less address."""
    from ray.dashboard.utils import ray_address_to_api_server_url

    host, _, port = gcs_address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"expected http(s)://host:port, ray://host:port or a GCS host:port, got {gcs_address!r}")
    _check_reachable(f"tcp://{host}:{port}")
    return str(ray_address_to_api_server_url(gcs_address))


def _check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, instead of waiting on a TCP timeout or retry loop."""
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https", "ray", "tcp"):
        raise ValueError(f"job server address must be http(s):// or ray://, got {address!r}")
    port = parts.port or {"http": 80, "https": 443, "ray": 10001, "tcp": 6379}[parts.scheme]
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConnectionError(f"no Ray job server at {address}: {e}") from None


@contextmanager
def _explicit_address() -> Iterator[None]:
    """Ray lets ``RAY_ADDRESS`` override an explicit job-server address; hide it while connecting."""
    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def entrypoint_for(kind: str, config_path: str) -> str:
    """The shell command a job runs: what ``ray job submit -- ...`` would take."""
    return f"python -m raymap.jobs.{kind} --config {shlex.quote(config_path)}"
