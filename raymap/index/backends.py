"""Search backends behind one Searcher interface: faiss-cpu, faiss-gpu, exact GEMM + top-k on torch/CUDA."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from raymap._parse import require_usable
from raymap.topk import exact_distances, normalize_rows, sort_rows, to_distances

log = logging.getLogger(__name__)
EXACT_SPARE = 4  # extra candidates re-ranked exactly by Flat shards


class Searcher(Protocol):
    """One loaded index shard. ``search`` returns true distances and global row ids, sorted."""

    ntotal: int

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _cuda_driver_devices() -> int:
    """GPUs the CUDA driver shows this process (honours CUDA_VISIBLE_DEVICES); 0 without a driver.

    Asked through libcuda directly because importing torch only to learn there is no GPU costs
    ~3 s per shard actor on a CPU node (measured: it was half of the pool's start time).
    """
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _torch_cuda() -> bool:
    if _cuda_driver_devices() == 0:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def available_backends() -> list[str]:
    """Backends usable in this process, CPU always last-resort present."""
    out = ["faiss-cpu"]
    if _faiss_gpus() > 0:
        out.append("faiss-gpu")
    if _torch_cuda():
        out.append("torch-exact")
    return out


def choose_backend(requested: str, factory: str) -> str:
    """Resolve ``auto`` from what this process can really use (not from CUDA_VISIBLE_DEVICES)."""
    have = available_backends()
    if requested != "auto":
        return require_usable(requested, have, "index")
    if "faiss-gpu" in have:
        choice, why = "faiss-gpu", "faiss sees a GPU"
    elif "torch-exact" in have and factory == "Flat":
        choice, why = "torch-exact", "CUDA via torch and an exact (Flat) index"
    else:
        choice, why = (
            "faiss-cpu",
            "no usable GPU backend" if len(have) == 1 else f"{factory} needs faiss",
        )
    log.info("index backend %s (%s; available: %s)", choice, why, have)
    return choice


class FaissSearcher:
    """A faiss index read from a file, on CPU or moved to a GPU; ids offset to global rows."""

    def __init__(
        self, path: str, row_start: int, metric: str, nprobe: int | None, threads: int, gpu: bool = False
    ) -> None:
        import faiss

        self.index = faiss.read_index(path)
        if nprobe is not None and _is_ivf(self.index):
            faiss.ParameterSpace().set_index_parameter(self.index, "nprobe", nprobe)
        if gpu:
            self.index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self.index)
        self.ntotal = int(self.index.ntotal)
        self.row_start, self.metric, self.threads = row_start, metric, threads
        # Exact indexes keep their vectors: a zero-copy view lets distances be recomputed exactly.
        self.xb = _flat_vectors(self.index) if not gpu else None

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        # omp_set_num_threads is per calling thread; Ray may call from another thread than __init__.
        faiss.omp_set_num_threads(self.threads)
        if self.metric == "cosine":
            xq = normalize_rows(xq)
        if self.xb is None:
            scores, ids = self.index.search(xq, min(k, self.ntotal))
            dist = to_distances(scores, ids, self.metric)
        else:
            # A few spare candidates, re-ranked by exact distances: which of two near-tied rows makes
            # the k-th place then no longer depends on GEMM rounding (i.e. on the sharding).
            _, ids = self.index.search(xq, min(k + EXACT_SPARE, self.ntotal))
            dist = exact_distances(xq, self.xb, ids, self.metric)
        ids = np.where(ids >= 0, ids + self.row_start, ids)
        dist, ids = sort_rows(dist, ids)
        return dist[:, :k], ids[:, :k]


def _flat_vectors(index: object) -> np.ndarray | None:
    """The (ntotal, d) float32 vectors of an IndexFlat, as a view of faiss's memory; else None."""
    import faiss

    if not isinstance(index, faiss.IndexFlat):
        return None
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def _is_ivf(index: Any) -> bool:
    import faiss

    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


class TorchExactSearcher:
    """Exact search as GEMM + top-k on a CUDA device: ||q||² - 2 q·xᵀ + ||x||², batched to memory.

    Runs wherever torch sees CUDA, without faiss-gpu; loads the vectors of a Flat shard.
    """

    def __init__(self, path: str, row_start: int, metric: str, batch_rows: int = 16_384) -> None:
        import faiss
        import torch

        index = faiss.read_index(path)
        xb = index.reconstruct_n(0, index.ntotal)
        self.device = torch.device("cuda")
        self.xb = torch.from_numpy(xb).to(self.device)
        self.xb_sq = (self.xb * self.xb).sum(1)
        self.ntotal = int(index.ntotal)
        self.row_start, self.metric, self.batch_rows = row_start, metric, batch_rows

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        k = min(k, self.ntotal)
        if self.metric == "cosine":
            xq = normalize_rows(xq)
        out_d, out_i = [], []
        for s in range(0, len(xq), self.batch_rows):
            q = torch.from_numpy(np.ascontiguousarray(xq[s : s + self.batch_rows])).to(self.device)
            sim = q @ self.xb.T
            if self.metric == "l2":
                score = (q * q).sum(1, keepdim=True) - 2 * sim + self.xb_sq
                d, i = torch.topk(score, k, dim=1, largest=False)
            else:
                d, i = torch.topk(sim, k, dim=1, largest=True)
            out_d.append(d.cpu().numpy())
            out_i.append(i.cpu().numpy().astype(np.int64))
        ids = np.concatenate(out_i)
        dist = to_distances(np.concatenate(out_d), ids, self.metric)
        return sort_rows(dist, ids + self.row_start)


def load_searcher(
    path: str, row_start: int, metric: str, nprobe: int | None, backend: str, threads: int = 1
) -> Searcher:
    """Open one shard with the named (already resolved) backend."""
    if backend == "torch-exact":
        return TorchExactSearcher(path, row_start, metric)
    return FaissSearcher(path, row_start, metric, nprobe, threads, gpu=backend == "faiss-gpu")
