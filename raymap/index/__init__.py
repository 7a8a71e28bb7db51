"""Index shards: spec, out-of-core build with manifest, and search backends."""

from raymap.index.backends import Searcher, available_backends, choose_backend, load_searcher
from raymap.index.build import IndexManifest, build_index, load_manifest
from raymap.index.spec import METRICS, IndexSpec, resolve_factory

__all__ = [
    "METRICS",
    "IndexManifest",
    "IndexSpec",
    "Searcher",
    "available_backends",
    "build_index",
    "choose_backend",
    "load_manifest",
    "load_searcher",
    "resolve_factory",
]
