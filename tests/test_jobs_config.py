"""Job configs and progress lines, without Ray: what a job accepts, refuses, prints and the client parses."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from raymap.jobs import build_index as build_job
from raymap.jobs import map as map_job
from raymap.jobs.config import config_from_args, load_config
from raymap.jobs.progress import ProgressPrinter, format_progress, parse_progress, parse_progress_line


def test_map_job_flags_and_config_file_give_the_same_config(tmp_path):
    from raymap.cli.map import map_kwargs

    flags = ["--query", "q.parquet", "--out", "m.zarr", "--k", "7", "--transfer", "cell_type=categorical"]
    from_flags = config_from_args(map_job.build_parser(), flags, map_kwargs)
    assert from_flags["k"] == 7 and from_flags["transfer"] == {"cell_type": "categorical"}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(from_flags))
    from_file = config_from_args(map_job.build_parser(), ["--config", str(path)], map_kwargs)
    assert map_job.check_config(from_file) == map_job.check_config(from_flags)
    with pytest.raises(ValueError, match=r"either --config or flags, not both \(got --config and \['k'\]\)"):
        config_from_args(map_job.build_parser(), ["--config", str(path), "--k", "5"], map_kwargs)


def test_map_job_config_keys_are_raymap_map_keywords():
    assert {"query", "reference", "out", "k", "kernel", "transfer", "resume", "replicas"} <= set(map_job.allowed_keys())
    assert "progress" not in map_job.allowed_keys()
    with pytest.raises(ValueError, match=r"unknown map job config key\(s\) \['kk', 'zz'\]; allowed keys: \["):
        map_job.check_config({"query": "q", "out": "o", "kk": 1, "zz": 2})
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['out'\]"):
        map_job.check_config({"query": "q"})
    with pytest.raises(ValueError, match="plain values"):
        map_job.check_config({"query": "q", "out": "o", "k": object()})


def test_build_index_job_fills_defaults_and_parses_flags():
    config = config_from_args(
        build_job.build_parser(),
        ["--reference", "r.parquet", "--out", "r.index", "--n-shards", "4", "--nprobe", "8"],
        build_job.flags_to_config,
    )
    checked = build_job.check_config(config)
    assert checked["n_shards"] == 4 and checked["nprobe"] == 8 and checked["index"] == "auto"


def test_load_config_reads_json_and_yaml_and_refuses_the_rest(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"k": 3}))
    (tmp_path / "b.yml").write_text("k: 3\n")
    (tmp_path / "c.yaml").write_text("- 1\n- 2\n")
    assert load_config(str(tmp_path / "a.json")) == load_config(str(tmp_path / "b.yml")) == {"k": 3}
    with pytest.raises(ValueError, match="must be a mapping"):
        load_config(str(tmp_path / "c.yaml"))
    with pytest.raises(FileNotFoundError, match="job config not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_progress_lines_round_trip_through_the_parser():
    line = format_progress("search", 4096, 20000, 1234.5, 12.94)
    assert line == "raymap-progress phase=search done=4096 total=20000 rows_per_s=1234.5 eta_s=12.9"
    assert parse_progress_line(line) == {
        "phase": "search",
        "done": 4096,
        "total": 20000,
        "fraction": 4096 / 20000,
        "rows_per_s": 1234.5,
        "eta_s": 12.9,
    }
    assert parse_progress_line(format_progress("weights", 0, 10, 0.0, None))["eta_s"] is None
    assert parse_progress_line("raymap-progress phase=search done=x total=1 rows_per_s=0 eta_s=0") is None
    assert parse_progress_line("INFO something else") is None
    search = [format_progress("search", done, 20, 1.0, 10.0) for done in (10, 20)]
    logs = "\n".join(["start", *search, format_progress("weights", 5, 20, 1.0, 15.0), "done"])
    parsed = parse_progress(logs)
    assert parsed["phase"] == "weights" and parsed["done"] == 5
    assert parsed["phases"]["search"]["done"] == 20
    assert parse_progress("no progress yet") == {}


def test_progress_printer_throttles_but_always_prints_a_phase_start_and_end():
    stream = io.StringIO()
    printer = ProgressPrinter(every_s=3600, stream=stream)
    for done in (0, 10, 20, 30):
        printer("search", done, 30)
    printer("weights", 0, 30)
    lines = [parse_progress_line(line) for line in stream.getvalue().splitlines()]
    assert [(p["phase"], p["done"]) for p in lines] == [("search", 0), ("search", 30), ("weights", 0)]
    assert lines[1]["eta_s"] == 0.0
