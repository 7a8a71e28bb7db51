"""Shared fixtures: one real local Ray cluster per test session, small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray (2 CPUs), started once: ray.init costs 10-15 s here (FIELD-NOTES.md)."""
    import ray

    from raymap.runtime import ensure_ray

    # A temp dir of its own: other local clusters on the machine (the job tests' head) stay apart.
    ensure_ray(num_cpus=2, temp_dir=f"/tmp/raymap-test-{os.getpid()}")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def atlas(tmp_path_factory: pytest.TempPathFactory):
    """A small demo atlas in every format, chunks smaller than the data so multi-chunk paths run."""
    from raymap import datasets

    return datasets.cell_atlas(tmp_path_factory.mktemp("atlas"), n_ref=6_000, n_query=2_000, chunk_rows=1_500)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory):
    """A small hive-partitioned image-embedding collection with thumbnails."""
    from raymap import datasets

    return datasets.image_collection(
        tmp_path_factory.mktemp("images"), n=3_000, dim=64, chunk_rows=1_000, n_images=300, n_image_files=30
    )


def raymap_actors() -> list[str]:
    """Class names of raymap's live actors (Ray Data leaves its own system actors alive)."""
    from ray._private import state

    from raymap.pool import ACTOR_CLASSES

    return [
        a["ActorClassName"]
        for a in state.actors().values()
        if a["State"] != "DEAD" and a["ActorClassName"] in ACTOR_CLASSES
    ]


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
