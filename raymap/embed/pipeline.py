"""embed(): images -> CPU preprocessing tasks -> model actor pool (GPU when there is one) -> Parquet + thumbnails."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymap._parse import parse_bytes
from raymap.embed.images import ERROR, PIXELS, prepare_images
from raymap.embed.inputs import read_input
from raymap.embed.models import ModelSpec, OpenClipEmbedder, resolve_model
from raymap.embed.writer import EmbeddingWriter, output_schema

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # phase, images done, images total
MAX_BATCH = 1024
PREPROCESS_CPUS = 1.0  # per decode/resize task: Pillow alone, no torch in these workers
N_SKIPPED_SHOWN = 20
LOG_EVERY_S = 10.0
ACTOR, STARTED, ENDED, BUSY = "_actor", "_actor_started", "_batch_ended", "_busy_s"  # timing columns, not written


@dataclass(frozen=True, slots=True)
class InferencePlan:
    """How the model actor pool is shaped on this cluster."""

    n_actors: int  # pool upper bound: one per GPU, else one per CPU node
    num_cpus: float  # reserved per actor: leaves CPUs for the preprocessing tasks (FIELD-NOTES deadlock trap)
    num_gpus: float
    threads: int  # torch intra-op threads, set in the thread that runs the model
    device: str


def plan_inference(total_cpus: int, node_cpus: int, n_gpus: int) -> InferencePlan:
    """One fp16 actor per GPU; else one actor per CPU node that reserves half a CPU and runs torch on all of them.

    Preprocessing tasks take one CPU each (:data:`PREPROCESS_CPUS`). The CPU actor's token half
    CPU leaves the rest to them, so decoding overlaps inference, and its differing resources keep
    Ray Data from fusing the preprocessing into the actor (it fuses stages that ask for the same).
    """
    if n_gpus > 0:
        return InferencePlan(n_gpus, 1.0, 1.0, 1, "cuda")
    return InferencePlan(max(1, total_cpus // max(1, node_cpus)), 0.5, 0.0, max(1, node_cpus), "cpu")


def batch_rows(spec: ModelSpec, memory_budget: int | str, device: str) -> int:
    """Images per inference batch: the largest power of two whose activations fit the budget (<= 1024)."""
    per_image = spec.bytes_per_image(dtype_bytes=2 if device == "cuda" else 4)
    rows = max(1, parse_bytes(memory_budget) // per_image)
    return int(min(MAX_BATCH, 1 << (int(rows).bit_length() - 1)))


class ImageEmbedActor:
    """Ray Data pool actor: holds one model; uint8 pixels in, ``emb`` out, rows with an ``error`` left at zero."""

    def __init__(self, spec: ModelSpec, plan: InferencePlan, seed: int) -> None:
        self.name, self.started = f"{os.uname().nodename}:{os.getpid()}", time.time()  # model loading counts as idle
        import torch

        device = plan.device
        if device == "cuda" and not torch.cuda.is_available():
            log.warning("the actor was given a GPU but torch sees no CUDA device; running on the CPU")
            device = "cpu"
        self.threads = plan.threads
        self.embedder = OpenClipEmbedder(spec, device=device, seed=seed)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from raymap.datasets import embedding_array

        torch.set_num_threads(self.threads)  # per calling thread: Ray calls here from another thread than __init__
        t0 = time.perf_counter()
        ok = batch.column(ERROR).is_null().to_numpy(zero_copy_only=False)
        emb = np.zeros((batch.num_rows, self.embedder.spec.dim), np.float32)
        if ok.any():
            pixels = batch.column(PIXELS).combine_chunks().to_numpy_ndarray()
            emb[ok] = self.embedder.embed(pixels[ok])
        n, busy = batch.num_rows, time.perf_counter() - t0
        clock = {ACTOR: [self.name] * n, STARTED: [self.started] * n, BUSY: [busy / n] * n, ENDED: [time.time()] * n}
        out = batch.drop_columns([PIXELS]).append_column("emb", embedding_array(emb))
        for name, values in clock.items():
            out = out.append_column(name, pa.array(values))
        return out


class _ActorClock:
    """Busy vs alive time of each model actor, from the timing columns it adds to every batch.

    Alive runs from the actor's start (model loading included) to its last batch; the pool is
    torn down right after, so ``1 - busy_share`` is the share of held accelerator time spent idle.
    """

    def __init__(self) -> None:
        self.actors: dict[str, list[float]] = {}  # name -> [started, last end, busy seconds]

    def add(self, batch: pa.Table) -> None:
        for name, started, ended, busy in zip(
            *(batch.column(c).to_pylist() for c in (ACTOR, STARTED, ENDED, BUSY)), strict=True
        ):
            clock = self.actors.setdefault(name, [started, ended, 0.0])
            clock[1] = max(clock[1], ended)
            clock[2] += busy

    def record(self) -> dict[str, Any]:
        alive = sum(end - start for start, end, _ in self.actors.values())
        busy = sum(b for _, _, b in self.actors.values())
        return {
            "actors": len(self.actors),
            "actor_alive_s": round(alive, 2),
            "actor_busy_s": round(busy, 2),
            "actor_busy_share": round(busy / alive, 3) if alive > 0 else None,
        }


@dataclass(slots=True)
class EmbedReport:
    """What one run did; ``skipped`` keeps the first (identifier, reason) pairs."""

    n_input: int
    n_already: int  # embedded by an earlier run: skipped (resume)
    n_embedded: int = 0
    n_skipped: int = 0  # unreadable / non-image / remote files: not embedded
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "none"
    clock: _ActorClock = field(default_factory=_ActorClock)

    def add_skipped(self, identifiers: list[str], reasons: list[str]) -> None:
        self.n_skipped += len(identifiers)
        room = max(0, N_SKIPPED_SHOWN - len(self.skipped))
        self.skipped += list(zip(identifiers[:room], reasons[:room], strict=True))

    def record(self) -> dict[str, Any]:
        return {
            "input_rows": self.n_input,
            "already_embedded": self.n_already,
            "embedded": self.n_embedded,
            "skipped": self.n_skipped,
            "first_skipped": [{"identifier": i, "reason": r} for i, r in self.skipped],
            "seconds": round(self.seconds, 2),
            "images_per_s": round((self.n_embedded + self.n_skipped) / self.seconds, 2) if self.seconds else 0.0,
            "device": self.device,
            **self.clock.record(),
        }


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """Where the output lives (the layout of ``datasets.ImageCollection``) and what this run did."""

    root: Path
    parquet: Path  # hive-partitioned Parquet dataset: open_source(parquet) / raymap.map read it as is
    images_h5: Path | None  # thumbnails keyed by uuid
    dim: int
    model: dict[str, Any]
    report: EmbedReport

    @property
    def n_embedded(self) -> int:
        return self.report.n_embedded

    @property
    def n_skipped(self) -> int:
        return self.report.n_skipped

    @property
    def n_already(self) -> int:
        return self.report.n_already

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.report.skipped

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.root),
            "parquet": str(self.parquet),
            "model": self.model["model"],
            "dim": self.dim,
            **self.report.record(),
        }


class _Meter:
    """images/s and ETA: to a progress callback on every batch, to the log every LOG_EVERY_S (job logs)."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self.t0 = self.last_log = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress("embed", self.done, self.total)
        now = time.perf_counter()
        if now - self.last_log >= LOG_EVERY_S or self.done >= self.total:
            self.last_log = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("embedded %d/%d images, %.1f images/s, ETA %.0f s", self.done, self.total, rate, eta)


def embed(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str = "bioclip",
    pretrained: str | None = None,
    image_size: int | None = None,
    memory_budget: int | str = "1GiB",
    partition_by: list[str] | None = None,
    thumbnail_size: int = 128,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> EmbedResult:
    """Embed a folder tree of images or a CSV/Parquet manifest into hive-partitioned Parquet under ``out``.

    Parameters
    ----------
    input
        A folder (walked recursively) or a manifest with an ``identifier`` column (path or
        ``file://`` URL) plus metadata columns, which are carried into the output.
    out
        Output folder: ``embeddings/`` (Parquet, partitioned by ``partition_by``; default
        ``source_dataset`` and ``img_type`` where present), ``images.h5`` thumbnails keyed by
        uuid, ``embed.json``. Re-running resumes: images already embedded are skipped.
    model, pretrained, image_size, cache_dir, allow_download
        See :func:`raymap.embed.resolve_model`; BioCLIP by default, from the local model cache:
        nothing is downloaded unless ``allow_download``.
    memory_budget
        Sets the inference batch size from the model's per-image activation memory.
    thumbnail_size
        Longer side of the stored JPEG thumbnails; 0 stores none.

    Unreadable and non-image files are skipped and reported (``n_skipped``, ``skipped``), never fatal.
    """
    t0 = time.perf_counter()
    table = read_input(input)
    spec = resolve_model(model, pretrained, image_size=image_size, cache_dir=cache_dir, allow_download=allow_download)
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) or thumbnail_size < 0:
        raise ValueError(f"thumbnail_size: expected an integer >= 0, got {thumbnail_size!r}")
    writer = EmbeddingWriter(
        out, output_schema(table.schema, spec.dim, spec.describe()), partition_by, thumbnail_size > 0, overwrite
    )
    done = writer.done_uuids()
    todo = table.filter(pc.invert(pc.is_in(table.column("uuid"), value_set=done))) if len(done) else table
    report = EmbedReport(n_input=table.num_rows, n_already=table.num_rows - todo.num_rows)
    try:
        if todo.num_rows == 0:
            log.info("%s: all %d images are already embedded in %s", input, table.num_rows, writer.parquet)
        else:
            log.info("%s: %d images to embed (%d already done)", input, todo.num_rows, report.n_already)
            _embed_rows(todo, spec, writer, report, memory_budget, thumbnail_size, seed, progress)
    finally:
        report.seconds = time.perf_counter() - t0
        writer.close({"input": os.fspath(input), **report.record()})
    if report.n_skipped:
        log.warning(
            "%d of %d files were not embedded (unreadable or not images); first: %s",
            report.n_skipped,
            todo.num_rows,
            report.skipped[:5],
        )
    return EmbedResult(
        writer.root, writer.parquet, writer.images_h5 if thumbnail_size else None, spec.dim, spec.describe(), report
    )


def _embed_rows(
    todo: pa.Table,
    spec: ModelSpec,
    writer: EmbeddingWriter,
    report: EmbedReport,
    memory_budget: int | str,
    thumbnail_size: int,
    seed: int,
    progress: Progress | None,
) -> None:
    """The Ray Data pipeline; the actor pool lives only while its iterator runs (Ray Data tears it down)."""
    import ray.data

    from raymap.runtime import cluster_shape, ensure_ray

    ensure_ray()
    plan = plan_inference(*cluster_shape())
    rows = batch_rows(spec, memory_budget, plan.device)
    report.device = plan.device
    log.info("inference: %s, %d image(s) per batch (memory budget %s)", plan, rows, memory_budget)
    blocks = [todo.slice(s, rows) for s in range(0, todo.num_rows, rows)]
    dataset = (
        ray.data.from_arrow(blocks)
        .map_batches(
            cast(Any, prepare_images),
            fn_kwargs={"preprocess": spec.preprocess, "thumbnail_size": thumbnail_size},
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=PREPROCESS_CPUS,
        )
        .map_batches(
            ImageEmbedActor,
            fn_constructor_kwargs={"spec": spec, "plan": plan, "seed": seed},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.n_actors),
            batch_size=rows,
            batch_format="pyarrow",
            num_cpus=plan.num_cpus,
            num_gpus=plan.num_gpus,
        )
    )
    meter = _Meter(todo.num_rows, progress)
    # prefetch_batches=0: with prefetching each batch reached the driver only when the next one was done.
    for block in dataset.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
        batch = cast(pa.Table, block)
        failed = batch.filter(pc.is_valid(batch.column(ERROR)))
        report.add_skipped(failed.column("identifier").to_pylist(), failed.column(ERROR).to_pylist())
        report.clock.add(batch)
        good = batch.filter(pc.is_null(batch.column(ERROR)))
        writer.write(good)
        report.n_embedded += good.num_rows
        meter.update(batch.num_rows)
