"""Index build job: ``python -m raymap.jobs.build_index --config job.yaml`` -> sharded faiss index directory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from raymap.jobs.config import check_keys, config_from_args, run_job

# Config keys and their defaults; ``out`` is the index directory that ``raymap.map(index_dir=...)`` reuses.
DEFAULTS: dict[str, Any] = {
    "reference": None,
    "out": None,
    "index": "auto",
    "metric": "l2",
    "nprobe": None,
    "target_recall": 0.95,
    "n_shards": 1,
    "k": 30,
    "tuning_query": None,
    "memory_budget": "1GiB",
    "column": "emb",
    "use_rep": "X_pca",
    "overwrite": False,
    "seed": 0,
}
REQUIRED = ("reference", "out")


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **check_keys(config, DEFAULTS, REQUIRED, "build_index")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per config key (``--n-shards`` for ``n_shards``); shared with ``raymap build-index``/``submit``."""
    for key, default in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, dest=key, action="store_true")
        else:
            p.add_argument(flag, dest=key, default=default, type=int if key == "nprobe" else type(default or ""))


def flags_to_config(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in DEFAULTS}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raymap.jobs.build_index", description=__doc__)
    p.add_argument("--config", default=None, help="YAML/JSON file with the keys below")
    add_arguments(p)
    return p


def run(config: dict[str, Any]) -> None:
    """Build (or reuse) the index; nprobe tuning uses ``tuning_query`` when given."""
    from raymap.index import IndexSpec, build_index
    from raymap.sources import open_source

    c = check_config(config)
    reference = open_source(c["reference"], column=c["column"], use_rep=c["use_rep"])
    tuning = open_source(c["tuning_query"], column=c["column"], use_rep=c["use_rep"]) if c["tuning_query"] else None
    spec = IndexSpec(factory=c["index"], metric=c["metric"], nprobe=c["nprobe"], target_recall=c["target_recall"])
    t0 = time.perf_counter()
    manifest = build_index(
        reference,
        c["out"],
        spec,
        n_shards=c["n_shards"],
        k=c["k"],
        tuning_source=tuning,
        memory_budget=c["memory_budget"],
        overwrite=c["overwrite"],
        seed=c["seed"],
    )
    summary = {
        "index_dir": c["out"],
        "factory": manifest.factory,
        "shards": len(manifest.shards),
        "nprobe": manifest.nprobe,
        "recall": manifest.recall,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    print(json.dumps(summary, indent=2, default=str), flush=True)
    print(f"raymap-result out={c['out']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_job(lambda: run(config_from_args(parser, argv, flags_to_config)), "build_index")


if __name__ == "__main__":
    sys.exit(main())
