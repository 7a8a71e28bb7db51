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
START_TIMEOUT_S = 180.0
START_ATTEMPTS = 2
READY_LINE = "This command will now block forever"  # what `ray start --block` prints once the node is up


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
        self.process: subprocess.Popen[bytes] | None = None
        self._allocate()

    def _allocate(self) -> None:
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        # Short path: Ray's unix sockets live under it (107-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="rmc-", dir="/tmp")
        self.log_path = Path(self.temp_dir) / "head.log"

    @property
    def address(self) -> str:
        """The job server (dashboard) URL: what :class:`raymap.client.Client` takes."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        """What a driver passes to ``ray.init(address=...)`` (or ``RAY_ADDRESS``) to join."""
        return f"{_node_ip()}:{self.gcs_port}"

    def start(self) -> LocalCluster:
        """Launch the head and wait until its job server answers."""
        return self.launch().wait_ready()

    def launch(self) -> LocalCluster:
        """Launch the head without waiting (overlap its start-up with other work; then :meth:`wait_ready`)."""
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
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        log.info("starting a local Ray head (job server %s, log %s)", self.address, self.log_path)
        return self

    def wait_ready(self, attempts: int = START_ATTEMPTS) -> LocalCluster:
        """Wait until the head has fully started; relaunch it if ``ray start`` gave up on the way.

        The job server answers before the raylet has registered, and on an overloaded machine
        ``ray start`` gives up after 30 s (not configurable): only its "block forever" line means up.
        """
        for attempt in range(1, attempts + 1):
            if self.process is None:
                raise RuntimeError("the local Ray head was not launched (call launch() or start())")
            code = self._wait_once()
            if code is None:
                return self
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.stop()
            if attempt == attempts:
                raise RuntimeError(f"ray start exited with code {code} ({attempts} attempts):\n{tail}")
            log.warning("ray start exited with code %s; starting the head again:\n%s", code, tail)
            self._allocate()
            self.launch()
        return self

    def _wait_once(self) -> int | None:
        """None once up; the exit code if ``ray start`` ended first."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            log_text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if READY_LINE in log_text and _job_server_up(self.address):
                return None
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"the local Ray head did not start within {START_TIMEOUT_S:.0f} s")

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the head's process group, SIGKILL what is left after ``grace_s``; remove the temp dir."""
        if self.process is not None:
            if self.process.poll() is not None:  # died on its own: keep the reason before the logs go
                tail = self.log_path.read_text(errors="replace")[-3000:]
                log.warning("the local Ray head had exited (code %s) before stop():\n%s", self.process.returncode, tail)
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
