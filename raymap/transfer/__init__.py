"""Streamed transfer from reference to query, one CSR chunk of the mapping operator at a time."""

from __future__ import annotations

from raymap.transfer.fields import KINDS, UNKNOWN, Field, build_fields, encode_labels, parse_transfer
from raymap.transfer.graph import CSRGraph, StoreMatrix, graph_names, open_graph, operator_for
from raymap.transfer.presence import presence_scores, process_scores
from raymap.transfer.run import run_transfer, vote
from raymap.transfer.symmetrize import METHODS, symmetrize

__all__ = [
    "KINDS",
    "METHODS",
    "UNKNOWN",
    "CSRGraph",
    "Field",
    "StoreMatrix",
    "build_fields",
    "encode_labels",
    "graph_names",
    "open_graph",
    "operator_for",
    "parse_transfer",
    "presence_scores",
    "process_scores",
    "run_transfer",
    "symmetrize",
    "vote",
]
