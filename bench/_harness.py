"""Benchmark plumbing: machine facts, process-tree peak RSS sampling, JSON records."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(os.environ.get("RAYMAP_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, GPU if any, library versions: what a number needs to be reread."""
    import faiss
    import numpy
    import pyarrow
    import ray
    import zarr

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        models = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": {
            "ray": ray.__version__,
            "faiss": faiss.__version__,
            "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__,
            "zarr": zarr.__version__,
        },
    }


def _peak_rss(p: psutil.Process) -> int:
    """The process's own high-water mark (Linux VmHWM), else its current RSS."""
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(p.memory_info().rss)


def tree_rss(root: psutil.Process, peaks: dict[int, int] | None = None) -> int:
    """RSS of a process and all its descendants (the driver plus every Ray process it started).

    Shared pages (the object store's mmap) count once per process that maps them: an upper bound.
    ``peaks`` collects each process's own high-water mark by pid, so short spikes between two
    samples are not lost: their sum bounds the tree's true peak from above.
    """
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
            if peaks is not None:
                peaks[p.pid] = max(peaks.get(p.pid, 0), _peak_rss(p))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


@dataclass
class PeakRSS:
    """Samples the process tree every ``interval_s`` on a thread; ``peak`` in bytes.

    Sampling is sparse on purpose: at 20 Hz the sampler's own CPU, on a 2-core machine, slowed a
    2-thread faiss search in another process by ~10 % (OpenMP barriers wait for the thread it
    preempts). Per-process high-water marks (``hwm_sum``) cover what falls between samples.
    """

    interval_s: float = 0.5
    peak: int = 0
    samples: int = 0
    peaks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        me = psutil.Process()
        while True:
            self.peak = max(self.peak, tree_rss(me, self.peaks))
            self.samples += 1
            if self._stop.wait(self.interval_s):
                break
        self.peak = max(self.peak, tree_rss(me, self.peaks))

    @property
    def hwm_sum(self) -> int:
        return sum(self.peaks.values())


@contextmanager
def measure() -> Iterator[dict[str, float]]:
    """``with measure() as m:`` -> ``m["seconds"]``, ``m["peak_rss_gib"]`` of the whole process tree.

    Also ``m["hwm_sum_gib"]``: the sum of every process's own peak (an upper bound of the tree peak).
    """
    sampler = PeakRSS()
    thread = threading.Thread(target=sampler._run, daemon=True)
    out: dict[str, float] = {}
    thread.start()
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = round(time.perf_counter() - t0, 3)
        sampler._stop.set()
        thread.join()
        out["peak_rss_gib"] = round(sampler.peak / 2**30, 3)
        out["hwm_sum_gib"] = round(sampler.hwm_sum / 2**30, 3)


class FreshRunError(RuntimeError):
    """A benchmark's child process failed; ``stderr`` holds what it printed."""

    def __init__(self, what: str, stderr: str) -> None:
        super().__init__(f"{what} failed: {stderr[-2000:]}")
        self.stderr = stderr


def run_fresh(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m module args`` in a new process from the repo root; its last stdout line is its JSON result.

    A fresh process per measured run gives it its own Ray and its own process tree to measure.
    """
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **(env or {})},
    )
    if out.returncode:
        raise FreshRunError(f"{module} {' '.join(args)}", out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_record(name: str, params: dict[str, Any], figures: dict[str, Any], line: str, quick: bool) -> Path:
    """One JSON record per run under bench/results/ (``*-quick.json`` for smoke runs) and a human line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "quick": quick,
        "machine": machine(),
        "params": params,
        "figures": figures,
        "summary": line,
    }
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(line)
    print(f"wrote {path}")
    return path
