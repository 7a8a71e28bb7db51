"""Per-replica state shared by every browser session: configuration, data roots, the job client, summaries."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from serve.paths import DataRoots
from serve.results import ResultSummary

if TYPE_CHECKING:
    from raymap.client import Client

ENV_ROOTS, ENV_JOBS = "RAYMAP_DATA_ROOTS", "RAYMAP_JOBS_ADDRESS"
MAX_CACHED_SUMMARIES = 32


@dataclass(frozen=True, slots=True)
class UIConfig:
    """How the UI is set up; travels to the Serve replica as the deployment's argument.

    Attributes
    ----------
    data_roots
        Folders the UI may read and write (absolute paths); nothing outside is reachable.
    jobs_address
        Ray job server (``http://host:8265``); ``None``: ``RAY_ADDRESS`` or the local default.
    """

    data_roots: tuple[str, ...]
    jobs_address: str | None = None

    @classmethod
    def from_env(cls) -> UIConfig:
        """``RAYMAP_DATA_ROOTS`` (``os.pathsep``-separated; default: the working directory) and ``RAYMAP_JOBS_ADDRESS``."""
        roots = [r for r in os.environ.get(ENV_ROOTS, "").split(os.pathsep) if r] or [os.getcwd()]
        return cls(tuple(os.path.abspath(r) for r in roots), os.environ.get(ENV_JOBS) or None)


class UIContext:
    """What the page's handlers share: checked roots, one lazily opened job client, an LRU of summaries."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        self.roots = DataRoots.parse(config.data_roots)
        self._client: Client | None = None
        self._explorer: Any = None
        self._lock = threading.Lock()
        self._summaries: OrderedDict[str, ResultSummary] = OrderedDict()

    def client(self) -> Client:
        """The job client, connected on first use (the job server may start after the UI)."""
        from raymap.client import Client

        with self._lock:
            if self._client is None:
                self._client = Client(self.config.jobs_address)
            return self._client

    def explorer(self) -> Any:
        """The :class:`serve.explorer.ExploreService` actor, started on first use; it lives as long as the replica."""
        from serve.explorer import start

        with self._lock:
            if self._explorer is None:
                self._explorer = start(self.config.data_roots)
            return self._explorer

    async def summary(self, result_path: str, query_path: str | None, fields: dict[str, str]) -> ResultSummary:
        """A finished job's :class:`ResultSummary`, computed once in a Ray task and then cached."""
        from serve.results import summarize_remote

        key = f"{result_path}|{query_path}|{sorted(fields.items())}"
        if key in self._summaries:
            self._summaries.move_to_end(key)
            return self._summaries[key]
        ref: Any = summarize_remote(result_path, query_path, fields)
        summary: ResultSummary = await asyncio.wrap_future(ref.future())
        self._summaries[key] = summary
        while len(self._summaries) > MAX_CACHED_SUMMARIES:
            self._summaries.popitem(last=False)
        return summary
