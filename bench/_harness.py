"""Benchmark plumbing: machine facts, process-tree peak RSS sampling, JSON records."""

from __future__ import annotations

import json
import os
import platform
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


def tree_rss(root: psutil.Process) -> int:
    """RSS of a process and all its descendants (the driver plus every Ray process it started).

    Shared pages (the object store's mmap) count once per process that maps them: an upper bound.
    """
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


@dataclass
class PeakRSS:
    """Samples the process tree every ``interval_s`` on a thread; ``peak`` in bytes."""

    interval_s: float = 0.05
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(me))
            self.samples += 1
            time.sleep(self.interval_s)


@contextmanager
def measure() -> Iterator[dict[str, float]]:
    """``with measure() as m:`` -> ``m["seconds"]``, ``m["peak_rss_gib"]`` of the whole process tree."""
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
