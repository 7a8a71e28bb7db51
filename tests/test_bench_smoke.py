"""Benchmarks are not tests, but each must still run: its seconds-long --quick mode, JSON written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import repo_root

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["bench_overhead", "bench_cellmapper", "bench_outofcore"])
def test_quick_mode_writes_json(name, tmp_path):
    env = {
        **__import__("os").environ,
        "RAYMAP_BENCH_DATA": str(tmp_path),
        "RAYMAP_RAY_TEMP_DIR": f"/tmp/rmb-{name[6:9]}",
    }
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick"],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / f"{name[6:]}-quick.json").read_text())
    assert record["quick"] and record["machine"]["cores"] and record["figures"]
