"""Benchmarks are not tests, but each must still run: its seconds-long --quick mode, JSON written.

The explore, embed and jobs benchmarks' quick modes run in ``make bench-quick`` (they pay a numba
compile, a model build or a second Ray head, which would double this file's time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import repo_root

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["overhead", "cellmapper", "outofcore", "transfer", "gpu"])
def test_quick_mode_writes_json(name, tmp_path):
    env = {
        **os.environ,
        "RAYMAP_BENCH_DATA": str(tmp_path / "data"),
        "RAYMAP_BENCH_RESULTS": str(tmp_path),
        "RAYMAP_RAY_TEMP_DIR": f"/tmp/rmb-{name[:3]}",
    }
    out = subprocess.run(
        [sys.executable, "-m", f"bench.bench_{name}", "--quick"],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / f"{name}-quick.json").read_text())
    assert record["quick"] and record["machine"]["cores"] and record["figures"]
    if name == "cellmapper":  # every contender ran, none reported an error instead of figures
        assert all("accuracy" in record["figures"][c] for c in ("raymap-flat", "raymap-auto", "cellmapper-faiss"))
