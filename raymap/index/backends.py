"""Search backends behind one Searcher interface: faiss-cpu, faiss-gpu, exact GEMM + top-k in torch."""

from __future__ import annotations

import importlib.util
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
    """Backends usable in this process, CPU always last-resort present.

    ``torch-exact`` is listed wherever torch is installed (on CPU it is a slow, exact reference
    path); ``auto`` picks it only when torch sees CUDA.
    """
    out = ["faiss-cpu"]
    if _faiss_gpus() > 0:
        out.append("faiss-gpu")
    if importlib.util.find_spec("torch") is not None:
        out.append("torch-exact")
    return out


def choose_backend(requested: str, factory: str) -> str:
    """Resolve ``auto`` from what this process can really use (not from CUDA_VISIBLE_DEVICES)."""
    have = available_backends()
    if requested != "auto":
        return require_usable(requested, have, "index")
    if "faiss-gpu" in have:
        choice, why = "faiss-gpu", "faiss sees a GPU"
    elif "torch-exact" in have and factory == "Flat" and _torch_cuda():
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
    """Exact search as GEMM + top-k in torch, on CUDA when torch sees it, else on CPU.

    Scores ``||x||² - 2 q·xᵀ`` pick ``k + EXACT_SPARE`` candidates per row; their distances are then
    recomputed pair by pair (as the Flat faiss path does), so which of two near-tied rows is the
    k-th does not depend on GEMM rounding or on the sharding. Queries go through in slices sized
    so the score matrix stays within ``scratch_bytes`` on the device.
    """

    def __init__(self, path: str, row_start: int, metric: str, threads: int = 1, scratch_bytes: int = 2**30) -> None:
        import faiss
        import torch

        index = faiss.read_index(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.xb = torch.from_numpy(index.reconstruct_n(0, index.ntotal)).to(self.device)
        self.xb_sq = (self.xb * self.xb).sum(1)
        self.ntotal = int(index.ntotal)
        self.row_start, self.metric = row_start, metric
        self.batch_rows = int(min(65_536, max(1, scratch_bytes // max(1, 3 * 4 * self.ntotal))))

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        kk = min(k + EXACT_SPARE, self.ntotal)
        if self.metric == "cosine":
            xq = normalize_rows(xq)
        out_d, out_i = [], []
        with torch.inference_mode():
            for s in range(0, len(xq), self.batch_rows):
                # writable + contiguous: torch refuses to wrap read-only (Arrow-backed) memory silently
                q = torch.from_numpy(np.require(xq[s : s + self.batch_rows], requirements=["C", "W"])).to(self.device)
                sim = q @ self.xb.T
                score = self.xb_sq - 2 * sim if self.metric == "l2" else -sim  # ||q||² is constant per row
                top = torch.topk(score, kk, dim=1, largest=False).indices
                cand = self.xb[top]  # (rows, kk, dim)
                if self.metric == "l2":
                    exact = (cand - q[:, None, :]).square().sum(-1).sqrt()
                else:
                    exact = 1.0 - (cand * q[:, None, :]).sum(-1)
                out_d.append(exact.cpu().numpy())
                out_i.append(top.cpu().numpy().astype(np.int64))
        dist, ids = sort_rows(np.concatenate(out_d), np.concatenate(out_i) + self.row_start)
        return dist[:, :k], ids[:, :k]


def load_searcher(
    path: str, row_start: int, metric: str, nprobe: int | None, backend: str, threads: int = 1
) -> Searcher:
    """Open one shard with the named (already resolved) backend."""
    if backend == "torch-exact":
        return TorchExactSearcher(path, row_start, metric, threads)
    return FaissSearcher(path, row_start, metric, nprobe, threads, gpu=backend == "faiss-gpu")
