"""Pieces shared by subcommands: progress bars and JSON-ish option parsing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def progress_bar(unit: str = "rows") -> Callable[[str, int, int], None]:
    """A tqdm bar per phase showing ``unit``s done, per second and ETA; the callback ``map(progress=...)`` takes."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=phase, unit=unit, unit_scale=True, smoothing=0.1)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def parse_mapping(text: str | None) -> dict[str, Any]:
    """``cell_type=categorical,score=numeric`` or a JSON object -> dict."""
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        return dict(json.loads(text))
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def parse_names(text: str | None) -> list[str] | None:
    """``a, b,c`` -> ``["a", "b", "c"]`` (empty parts dropped); None when the option was not given."""
    return [name.strip() for name in text.split(",") if name.strip()] if text else None
