"""Benchmark: images/s of raymap.embed (Ray Data, CPU workers + model actor) against a plain one-process loop.

Run ``python -m bench.bench_embed --quick`` (48 images) or without ``--quick`` (512 images). Both
paths embed the same JPEGs with the same ViT-B/32-sized open_clip model (random weights: speed
does not depend on them) at 224 px. ``busy_images_per_s`` is the model actor's rate while it
computes (decoding runs in other workers); ``actor_busy_share`` is its busy time over its life,
model loading included (1 - share = idle time of the held CPU/GPU). Ray start-up is reported
apart. Results print and go to ``bench/results/embed[-quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._harness import RESULTS  # honours RAYMAP_BENCH_RESULTS


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` distinct JPEGs (crops of scikit-learn's sample photos, 240-420 px), as a user's folder would hold."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = (int(v) for v in rng.integers(240, 420, 2))
        y, x = int(rng.integers(0, photo.shape[0] - h)), int(rng.integers(0, photo.shape[1] - w))
        path = folder / f"img{i:05d}.jpg"
        Image.fromarray(photo[y : y + h, x : x + w]).save(path, quality=90)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], model: str, batch: int, threads: int) -> dict[str, float]:
    """The baseline: decode, preprocess and embed in one process, batch by batch (no Ray)."""
    import torch

    from raymap.embed import OpenClipEmbedder, resolve_model
    from raymap.embed.images import geometric_transform, load_rgb

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    spec = resolve_model(model)
    embedder = OpenClipEmbedder(spec)
    transform = geometric_transform(spec.preprocess)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(paths), batch):
        pixels = np.stack([np.asarray(transform(load_rgb(str(p)))) for p in paths[start : start + batch]])
        embedder.embed(pixels)
    seconds = time.perf_counter() - t0
    return {
        "model_load_s": round(load_s, 2),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(paths) / seconds, 2),
    }


def raymap_embed(folder: Path, out: Path, model: str, memory_budget: str) -> dict[str, float]:
    """raymap.embed on the running local Ray: wall time (pool start + model load included) and model-busy rate."""
    from raymap.embed import embed

    marks: list[float] = []
    t0 = time.perf_counter()
    result = embed(
        folder, out, model=model, memory_budget=memory_budget, progress=lambda *_: marks.append(time.perf_counter())
    )
    seconds = time.perf_counter() - t0
    clock = {k: v for k, v in result.report.record().items() if k.startswith("actor")}
    return {
        "seconds": round(seconds, 2),
        "images_per_s": round(result.n_embedded / seconds, 2),
        "first_batch_s": round(marks[0] - t0, 2),
        "batches": len(marks),
        "embedded": result.n_embedded,
        **clock,
        "busy_images_per_s": round(result.n_embedded / clock["actor_busy_s"], 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="48 images instead of 512")
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--memory-budget", default="128MiB", help="sets the batch size of both paths")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import torch

    from raymap.embed import batch_rows, resolve_model
    from raymap.runtime import ensure_ray

    n = 48 if args.quick else 512
    cpus = os.cpu_count() or 1
    batch = batch_rows(resolve_model(args.model), args.memory_budget, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp) / "images", n)
        baseline = plain_loop(paths, args.model, batch, threads=cpus)
        t0 = time.perf_counter()
        ensure_ray(num_cpus=cpus)
        ray_start = time.perf_counter() - t0
        pipeline = raymap_embed(Path(tmp) / "images", Path(tmp) / "out", args.model, args.memory_budget)
    report = {
        "benchmark": "embed",
        "quick": args.quick,
        "machine": {"cpus": cpus, "platform": platform.platform(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "versions": {"torch": torch.__version__},
        "data": {"images": n, "source": "crops of sklearn sample photos, 240-420 px JPEG"},
        "model": {"name": args.model, "weights": "random", "image_size": 224, "batch": batch},
        "plain_loop": baseline,
        "raymap": {"ray_start_s": round(ray_start, 2), **pipeline},
        "ratio_wall_vs_plain": round(pipeline["images_per_s"] / baseline["images_per_s"], 3),
        "ratio_busy_vs_plain": round(pipeline["busy_images_per_s"] / baseline["images_per_s"], 3),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"embed{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written: {path}")
    return report


if __name__ == "__main__":
    main()
