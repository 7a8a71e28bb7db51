"""Embed image collections with open_clip / BioCLIP on a Ray actor pool into the emb-explorer Parquet layout."""

from __future__ import annotations

from raymap.embed.inputs import image_uuid, read_input
from raymap.embed.models import Embedder, MissingWeightsError, ModelSpec, OpenClipEmbedder, resolve_model
from raymap.embed.pipeline import EmbedResult, InferencePlan, batch_rows, embed, plan_inference
from raymap.embed.writer import read_model_metadata, read_summary

__all__ = [
    "EmbedResult",
    "Embedder",
    "InferencePlan",
    "MissingWeightsError",
    "ModelSpec",
    "OpenClipEmbedder",
    "batch_rows",
    "embed",
    "image_uuid",
    "plan_inference",
    "read_input",
    "read_model_metadata",
    "read_summary",
    "resolve_model",
]
