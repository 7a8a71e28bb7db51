"""``raymap embed``: embed a folder of images or a manifest with open_clip / BioCLIP into Parquet + thumbnails."""

from __future__ import annotations

import argparse
import json

from raymap.cli._common import parse_names, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Embedding options, shared with ``jobs/embed.py``."""
    p.add_argument("input", help="folder of images (walked recursively) or a .csv/.parquet manifest with 'identifier'")
    p.add_argument("--out", required=True, help="output folder: embeddings/ (Parquet), images.h5, embed.json")
    p.add_argument(
        "--model",
        default="bioclip",
        help="bioclip (default), bioclip-2, an open_clip architecture, hf-hub:ORG/REPO or local-dir:PATH",
    )
    p.add_argument(
        "--pretrained",
        default=None,
        help="for an open_clip architecture: weights file or tag (from the local cache); omit: random weights",
    )
    p.add_argument("--image-size", type=int, default=None, help="force the model's input size (default: the model's)")
    p.add_argument("--memory-budget", default="1GiB", help="per-actor activation memory; sets the batch size")
    p.add_argument(
        "--partition-by",
        default=None,
        help="comma-separated hive partition columns (default: source_dataset,img_type where present)",
    )
    p.add_argument("--thumbnail-size", type=int, default=128, help="longer side of stored thumbnails; 0: none")
    p.add_argument(
        "--cache-dir", default=None, help="model cache to look in (default: the Hugging Face / open_clip cache)"
    )
    p.add_argument(
        "--allow-download", action="store_true", help="fetch missing weights from the hub (off: fail instead)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output instead of resuming it")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights (pretrained omitted)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed images into Parquet (emb-explorer schema) + HDF5 thumbnails; resumes")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, progress: bool = True) -> int:
    """Run :func:`raymap.embed.embed` from parsed arguments; tqdm bar when ``progress``, else log lines only."""
    from raymap.embed import embed

    result = embed(
        args.input,
        args.out,
        model=args.model,
        pretrained=args.pretrained,
        image_size=args.image_size,
        memory_budget=args.memory_budget,
        partition_by=parse_names(args.partition_by),
        thumbnail_size=args.thumbnail_size,
        cache_dir=args.cache_dir,
        allow_download=args.allow_download,
        overwrite=args.overwrite,
        seed=args.seed,
        progress=progress_bar("images") if progress else None,
    )
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0
