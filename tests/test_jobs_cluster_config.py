"""cluster.yaml against Ray's own autoscaler schema, and the GPU count an autoscaling cluster advertises."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


def _prepared(config: dict) -> dict:
    """What ``ray up`` does before launching: fill the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_validator(config):
    prepared = _prepared(config)
    types = prepared["available_node_types"]
    head, gpu = types[prepared["head_node_type"]], types["gpu_worker"]
    assert head["resources"].get("GPU", 0) == 0
    assert gpu["resources"]["GPU"] == 1
    assert gpu["min_workers"] == 0 and 1 <= gpu["max_workers"] <= prepared["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0
    assert any('raymap[gpu]"' in cmd for cmd in gpu["worker_setup_commands"])
    start = " ".join(prepared["head_start_ray_commands"])
    advertised = int(re.search(r"RAYMAP_AUTOSCALE_GPUS=(\d+)", start).group(1))
    assert advertised == gpu["max_workers"] * gpu["resources"]["GPU"]


@pytest.mark.parametrize(
    "path, bad",
    [
        (("available_node_types", "gpu_worker", "resources", "GPU"), 0.5),  # Ray wants integer resources
        (("available_node_types", "gpu_worker", "gpu_count"), 1),  # unknown key
    ],
)
def test_validator_rejects_a_broken_cluster_yaml(config, path, bad):
    broken = copy.deepcopy(config)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        _prepared(broken)


@pytest.mark.ray
def test_autoscale_gpus_are_counted_before_any_gpu_node_is_up(ray_cluster, monkeypatch):
    from raymap.runtime import AUTOSCALE_GPUS_ENV, cluster_shape

    assert ray_cluster.cluster_resources().get("GPU", 0) == 0
    monkeypatch.setenv(AUTOSCALE_GPUS_ENV, "2")
    assert cluster_shape()[2] == 2
    monkeypatch.setenv(AUTOSCALE_GPUS_ENV, "two")
    with pytest.raises(ValueError, match="RAYMAP_AUTOSCALE_GPUS must be a number of GPUs >= 0, got 'two'"):
        cluster_shape()
