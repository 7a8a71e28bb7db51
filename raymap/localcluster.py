"""LocalCluster: a Ray head with the job server on this machine, started and stopped as one process group."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """``ray start --head --block`` in its own process group, so stopping it touches nothing else.

    ``ray stop`` would stop every Ray on the machine; killing this head's process group stops
    exactly the processes it started (GCS, raylet, dashboard with the job server, workers).
    Every port is picked free and the temp dir is private, so several clusters can share a host.
    The head runs with this interpreter's ``bin`` first on ``PATH``: job entry points written as
    ``python ...`` then run in the same environment as the client.
    """

    def __init__(
        self,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        object_store_memory: int = 256 * 2**20,
    ) -> None:
        self.num_cpus, self.num_gpus, self.object_store_memory = num_cpus, num_gpus, object_store_memory
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        # Short path: Ray's unix sockets live under it (107-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="rmc-", dir="/tmp")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The job server (dashboard) URL: what :class:`raymap.client.Client` takes."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        """What a driver passes to ``ray.init(address=...)`` (or ``RAY_ADDRESS``) to join."""
        return f"{_node_ip()}:{self.gcs_port}"

    def start(self) -> LocalCluster:
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            f"--port={self.gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--object-store-memory={self.object_store_memory}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        if self.num_cpus is not None:
            cmd.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            cmd.append(f"--num-gpus={self.num_gpus}")
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            env.pop(name, None)  # a head never joins another cluster
        log_path = Path(self.temp_dir) / "head.log"
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        log.info("starting a local Ray head (job server %s, log %s)", self.address, log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"ray start exited with code {self.process.returncode}:\n{tail}")
            if _job_server_up(self.address):
                return self
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"the local Ray head did not serve {self.address} within {START_TIMEOUT_S:.0f} s")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the head's process group, SIGKILL what is left after ``grace_s``; remove the temp dir."""
        if self.process is not None:
            _kill_group(self.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while (self.process.poll() is None or _group_alive(self.process.pid)) and time.monotonic() < deadline:
                time.sleep(0.2)
            _kill_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _node_ip() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


def _job_server_up(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
