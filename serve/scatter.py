"""The Explore tab's map: a level-of-detail view (density raster + interactive points) as a browser payload.

The browser draws it on a canvas (``scatter.js``): the raster carries the mass of millions of
points, the bounded point sample carries colour, hover text, click and box selection.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from serve.datainfo import is_identifier

# A qualitative palette: Tableau 10, then ten hues chosen to stay apart from them.
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#000075",
    "#808000",
    "#800000",
    "#42d4f4",
    "#911eb4",
    "#bfef45",
    "#f032e6",
    "#469990",
    "#dcbeff",
    "#000000",
]
OTHER_COLOR = "#c7c7c7"
MAX_LEGEND = len(PALETTE)
HOVER_COLUMNS = 7
# Viridis at 6 stops, for numeric colour-by.
_VIRIDIS = np.array([[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]])
JS = (Path(__file__).with_name("scatter.js")).read_text()
HTML = '<div class="rm-scatter"><canvas></canvas><div class="rm-tip"></div></div><div class="rm-legend"></div>'
CSS = """
.rm-scatter { position: relative; width: 100%; height: 560px; cursor: crosshair; }
.rm-scatter canvas { width: 100%; height: 100%; border-radius: 8px; background: #fbfcfd; }
.rm-tip { position: absolute; pointer-events: none; display: none; background: rgba(17,24,39,.92); color: #fff;
  font-size: 12px; padding: 6px 8px; border-radius: 6px; white-space: pre; z-index: 5; max-width: 420px; }
.rm-legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 12px; margin-top: 6px; }
.rm-legend .cap { margin-left: auto; color: #64748b; }
.rm-legend span.sw { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; }
"""


def scatter_component(elem_id: str) -> gr.HTML:
    """An empty map; its value is a :func:`payload` dict, its events ``click`` (a point) and ``select`` (a box)."""
    return gr.HTML(None, html_template=HTML, css_template=CSS, js_on_load=JS, elem_id=elem_id, padding=False)


def density_png(density: np.ndarray) -> str:
    """Counts per bin -> a translucent blue raster (log scale, y up) as a PNG data URL."""
    from PIL import Image

    d = np.log1p(np.asarray(density, dtype=np.float64))
    d = d / d.max() if d.max() > 0 else d
    rgba = np.zeros((*d.shape, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 30, 90, 160
    rgba[..., 3] = np.round(235 * d**0.6).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba[::-1], mode="RGBA").save(buf, format="PNG")  # row 0 = lowest y -> bottom of image
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def colors_for(values: pd.Series) -> tuple[list[str], list[tuple[str, str]]]:
    """Per-point colours and the legend: palette for categories (most frequent first), viridis for numbers."""
    if pd.api.types.is_float_dtype(values) and values.nunique() > MAX_LEGEND:
        v = values.to_numpy(dtype=np.float64)
        lo, hi = np.nanmin(v), np.nanmax(v)
        t = np.nan_to_num((v - lo) / (hi - lo) if hi > lo else np.zeros_like(v))
        idx = t * (len(_VIRIDIS) - 1)
        i0 = np.clip(np.floor(idx).astype(int), 0, len(_VIRIDIS) - 2)
        rgb = _VIRIDIS[i0] + (_VIRIDIS[i0 + 1] - _VIRIDIS[i0]) * (idx - i0)[:, None]
        colors = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.round(rgb).astype(int)]
        return colors, [(f"{lo:.3g}", "#440154"), (f"{hi:.3g}", "#fde725")]
    text = values.astype(str)
    if pd.api.types.is_integer_dtype(values):  # cluster ids: in their own order
        order = [str(v) for v in sorted(values.unique())]
    else:
        order = text.value_counts().index.tolist()
    lookup = {name: PALETTE[i] for i, name in enumerate(order[:MAX_LEGEND])}
    legend = [(name, lookup[name]) for name in order[:MAX_LEGEND]]
    if len(order) > MAX_LEGEND:
        legend.append((f"{len(order) - MAX_LEGEND} more", OTHER_COLOR))
    return [lookup.get(name, OTHER_COLOR) for name in text], legend


def hover_columns(points: pd.DataFrame, color_by: str | None) -> list[str]:
    """What a tooltip lists: the colour column, the cluster, then text columns most specific first (by
    distinct values), then numbers; identifiers (``uuid``, ``identifier``, ``*_id``) are left out."""
    skip = {"row_id", "x", "y", "cluster", color_by}
    rest = [c for c in points.columns if c not in skip and not is_identifier(str(c))]
    text = [c for c in rest if not pd.api.types.is_numeric_dtype(points[c])]
    numbers = [c for c in rest if c not in text]
    text.sort(key=lambda c: -points[c].nunique())
    first = [c for c in (color_by, "cluster") if c and c in points]
    return list(dict.fromkeys(first + text + numbers))[:HOVER_COLUMNS]


def hover_text(points: pd.DataFrame, columns: list[str]) -> list[str]:
    """One tooltip per point: ``column: value`` lines."""
    shown = [c for c in columns if c in points]
    parts = [c + ": " + points[c].astype(str) for c in shown]
    if not parts:
        return [""] * len(points)
    joined = parts[0]
    for p in parts[1:]:
        joined = joined + "\n" + p
    return joined.tolist()


def payload(
    points: pd.DataFrame,
    positions: np.ndarray,
    density: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    color_by: str | None,
    caption: str,
) -> dict[str, Any]:
    """What the browser draws: raster, ranges, and for each interactive point x, y, colour, position, tooltip."""
    shown = points.iloc[positions]
    if color_by and color_by in shown:
        colors, legend = colors_for(shown[color_by])
    else:
        colors, legend = [PALETTE[0]] * len(shown), []
    return {
        "density": density_png(density),
        "xr": [float(x_range[0]), float(x_range[1])],
        "yr": [float(y_range[0]), float(y_range[1])],
        "x": np.round(shown["x"].to_numpy(dtype=np.float64), 5).tolist(),
        "y": np.round(shown["y"].to_numpy(dtype=np.float64), 5).tolist(),
        "pos": [int(p) for p in positions],
        "color": colors,
        "tip": hover_text(shown, hover_columns(points, color_by)),
        "legend": [[name, color] for name, color in legend],
        "caption": caption,
    }
