"""Out-of-core index build: train on a sample, add the reference chunk by chunk, save shards + manifest."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raymap._parse import format_bytes, parse_bytes
from raymap.index.spec import IndexSpec, resolve_factory
from raymap.sources import EmbeddingSource, plan_batches
from raymap.topk import merge_topk, normalize_rows, recall_at_k, to_distances

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
TUNING_QUERIES = 1_000
NPROBE_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One saved shard: file name (relative to the index dir) and the global rows it holds."""

    file: str
    row_start: int
    row_stop: int


@dataclass(frozen=True, slots=True)
class IndexManifest:
    """What was built, from what, and how well it searches; written last, so its presence means done."""

    factory: str
    metric: str
    dim: int
    n_rows: int
    source_fingerprint: str
    shards: list[ShardInfo]
    nprobe: int | None = None  # tuned (or requested) cells probed; None for exact indexes
    recall: float | None = None  # measured recall@k at ``nprobe`` on held-out queries
    recall_k: int | None = None
    index_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.factory == "Flat"

    def shard_path(self, i: int) -> str:
        return os.path.join(self.index_dir, self.shards[i].file)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("index_dir")
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str, index_dir: str) -> IndexManifest:
        d = json.loads(text)
        d["shards"] = [ShardInfo(**s) for s in d["shards"]]
        return cls(**d, index_dir=index_dir)


def load_manifest(index_dir: str | os.PathLike[str]) -> IndexManifest:
    """Read a saved index's manifest and check every shard file is there."""
    path = Path(index_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no index at {index_dir}: {MANIFEST} missing")
    try:
        manifest = IndexManifest.from_json(path.read_text(), os.fspath(index_dir))
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: corrupt index manifest: {e}") from e
    for i, shard in enumerate(manifest.shards):
        if not os.path.exists(manifest.shard_path(i)):
            raise FileNotFoundError(f"{index_dir}: shard file {shard.file} listed in the manifest is missing")
    return manifest


def _atomic_write_index(index: Any, path: str) -> None:
    import faiss

    tmp = f"{path}.tmp-{os.getpid()}"
    faiss.write_index(index, tmp)
    os.replace(tmp, path)


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    return normalize_rows(x) if metric == "cosine" else x


def _training_sample(source: EmbeddingSource, n_sample: int, metric: str, seed: int, batch_rows: int) -> np.ndarray:
    """A uniform sample of ``n_sample`` rows, gathered batch by batch (one batch in memory)."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(source.n_rows, size=min(n_sample, source.n_rows), replace=False))
    parts = []
    for start, stop in plan_batches(source.n_rows, batch_rows):
        sel = picks[(picks >= start) & (picks < stop)]
        if sel.size:
            parts.append(source.read(start, stop)[sel - start])
    return _prepare(np.concatenate(parts), metric)


def _existing(
    out: Path, source_fp: str, factory: str, spec: IndexSpec, n_shards: int, source: EmbeddingSource
) -> IndexManifest | None:
    """A saved index that matches, None if there is none; ValueError if one is there but differs."""
    if not (out / MANIFEST).exists():
        return None
    manifest = load_manifest(out)
    want = {
        "factory": factory,
        "metric": spec.metric,
        "dim": source.dim,
        "n_rows": source.n_rows,
        "source_fingerprint": source_fp,
        "n_shards": n_shards,
    }
    have = {
        "factory": manifest.factory,
        "metric": manifest.metric,
        "dim": manifest.dim,
        "n_rows": manifest.n_rows,
        "source_fingerprint": manifest.source_fingerprint,
        "n_shards": len(manifest.shards),
    }
    diff = {key: (have[key], want[key]) for key in want if have[key] != want[key]}
    if diff:
        raise ValueError(
            f"{out}: a different index is saved there ({', '.join(f'{k}: saved {a!r}, wanted {b!r}' for k, (a, b) in diff.items())}); "
            "pass overwrite=True or another index_dir"
        )
    return manifest


def build_index(
    source: EmbeddingSource,
    out_dir: str | os.PathLike[str],
    spec: IndexSpec | None = None,
    n_shards: int = 1,
    k: int = 30,
    tuning_source: EmbeddingSource | None = None,
    memory_budget: int | str = "1GiB",
    overwrite: bool = False,
    seed: int = 0,
) -> IndexManifest:
    """Build (or reuse) a sharded faiss index of ``source`` under ``out_dir``.

    Training uses a uniform sample (256 rows per IVF list, capped by the memory budget);
    vectors are added one batch at a time, one shard in memory at a time. Shards split rows
    by range; each shard's local id + its ``row_start`` is the global row id. For IVF the
    number of probed lists is tuned on held-out queries (from ``tuning_source`` when given)
    until recall@k against exact search reaches ``spec.target_recall``; both are recorded.
    """
    import faiss

    spec = spec or IndexSpec()
    if n_shards < 1 or n_shards > source.n_rows:
        raise ValueError(f"n_shards must be in [1, {source.n_rows}], got {n_shards}")
    out = Path(out_dir)
    factory = resolve_factory(spec.factory, source.n_rows, source.dim)
    fp = source.fingerprint()
    try:
        found = _existing(out, fp, factory, spec, n_shards, source)
    except (ValueError, FileNotFoundError):
        if not overwrite:
            raise
        log.info("replacing the index at %s (overwrite=True)", out)
        (out / MANIFEST).unlink(missing_ok=True)
        found = None
    if found is not None:
        log.info("reusing index at %s (%s, %d shards)", out, found.factory, len(found.shards))
        return found
    out.mkdir(parents=True, exist_ok=True)
    budget = parse_bytes(memory_budget)
    batch_rows = source.batch_rows_for(budget // 4)
    template = faiss.index_factory(source.dim, factory, spec.faiss_metric)
    if not template.is_trained:
        nlist = faiss.extract_index_ivf(template).nlist
        n_train = min(source.n_rows, 256 * nlist, max(64 * nlist, budget // 2 // (4 * source.dim)))
        log.info("training %s on %d rows (%s)", factory, n_train, format_bytes(n_train * 4 * source.dim))
        template.train(_training_sample(source, n_train, spec.metric, seed, batch_rows))
    bounds = np.linspace(0, source.n_rows, n_shards + 1).astype(np.int64)
    shards = []
    for s in range(n_shards):
        index = faiss.clone_index(template)
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        for start, stop in plan_batches(hi, batch_rows, start=lo):
            index.add(_prepare(source.read(start, stop), spec.metric))
        name = f"shard_{s:04d}.faiss"
        _atomic_write_index(index, str(out / name))
        shards.append(ShardInfo(name, lo, hi))
        del index
    manifest = IndexManifest(factory, spec.metric, source.dim, source.n_rows, fp, shards, index_dir=os.fspath(out))
    if not manifest.exact:
        manifest = _tune_nprobe(manifest, source, tuning_source or source, spec, k, batch_rows, seed)
    tmp = out / f"{MANIFEST}.tmp"
    tmp.write_text(manifest.to_json())
    os.replace(tmp, out / MANIFEST)
    log.info(
        "index saved at %s: %s, %d shards, nprobe %s, recall@%s %s",
        out,
        factory,
        n_shards,
        manifest.nprobe,
        manifest.recall_k,
        manifest.recall,
    )
    return manifest


def _tune_nprobe(
    manifest: IndexManifest,
    source: EmbeddingSource,
    queries: EmbeddingSource,
    spec: IndexSpec,
    k: int,
    batch_rows: int,
    seed: int,
) -> IndexManifest:
    """Smallest nprobe whose recall@k on held-out queries reaches the target (or the requested one)."""
    import faiss
    from faiss.contrib.exhaustive_search import knn_ground_truth

    k = min(k, source.n_rows)
    rng = np.random.default_rng(seed + 1)
    picks = np.sort(rng.choice(queries.n_rows, size=min(TUNING_QUERIES, queries.n_rows), replace=False))
    xq = _prepare(np.stack([queries.read(int(i), int(i) + 1)[0] for i in picks]), spec.metric)
    db = (_prepare(source.read(s, e), spec.metric) for s, e in plan_batches(source.n_rows, batch_rows))
    _, truth = knn_ground_truth(xq, db, k, spec.faiss_metric)
    first = faiss.read_index(manifest.shard_path(0))
    nlist = faiss.extract_index_ivf(first).nlist
    del first
    candidates = [spec.nprobe] if spec.nprobe else [p for p in NPROBE_CANDIDATES if p <= nlist]
    per_nprobe: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {p: [] for p in candidates}
    for i, shard in enumerate(manifest.shards):
        index = faiss.read_index(manifest.shard_path(i))
        for p in candidates:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", p)
            scores, ids = index.search(xq, k)
            per_nprobe[p].append(
                (
                    to_distances(scores, ids, spec.metric),
                    np.where(ids >= 0, ids + shard.row_start, ids),
                )
            )
    best_p, best_r = candidates[-1], 0.0
    for p in candidates:
        _, ids = merge_topk([d for d, _ in per_nprobe[p]], [i for _, i in per_nprobe[p]], k)
        r = recall_at_k(ids, truth)
        log.info("nprobe %d: recall@%d %.4f", p, k, r)
        best_p, best_r = p, r
        if r >= spec.target_recall:
            break
    if best_r < spec.target_recall:
        log.warning(
            "%s reaches recall@%d %.3f < target %.3f even at nprobe %d",
            manifest.factory,
            k,
            best_r,
            spec.target_recall,
            best_p,
        )
    return dataclasses.replace(manifest, nprobe=best_p, recall=round(best_r, 5), recall_k=k)
