"""The Explore tab: filter, sample, cluster and project a dataset; browse the map, its images and neighbours."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from serve import render
from serve.context import UIContext
from serve.params import CLUSTER_BACKENDS, PROJECTIONS, parse_explore_request, parse_export
from serve.paths import PathRefused
from serve.scatter import scatter_component

log = logging.getLogger(__name__)
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def user_message(e: BaseException) -> str:
    """The error a person should read: the original one when it came back from a Ray actor or task."""
    import ray.exceptions

    cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e
    return str(cause).strip().splitlines()[-1] if isinstance(e, ray.exceptions.RayTaskError) else str(cause)


def filters_markdown(filters: dict[str, list[Any]]) -> str:
    if not filters:
        return "*No filter: every row is eligible for the sample.*"
    return "  \n".join(f"**{c}** ∈ {', '.join(map(str, v))}" for c, v in filters.items())


def summary_markdown(summary: dict[str, Any]) -> str:
    """Points, what the filter read, which backends ran and how long each step took."""
    source = str(summary.get("source", "")).split(" [")[0]
    lines = [f"**{summary.get('points', 0):,} points** from `{Path(source).name}`"]
    read = summary.get("read")
    if read:
        lines.append(
            f"filter read {read.get('files_read')} of {read.get('files_total')} files "
            f"({100 * read.get('bytes_read', 0) / max(read.get('bytes_total', 1), 1):.0f} % of the bytes), "
            f"{read.get('rows_matched', 0):,} rows matched"
        )
    backends = summary.get("backends") or {}
    seconds = summary.get("seconds") or {}
    if backends or seconds:
        lines.append(
            " · ".join(f"{k}: {v}" for k, v in backends.items())
            + ("  \n" if backends else "")
            + " · ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
        )
    lines.extend(f"⚠ {note}" for note in summary.get("notes") or [])
    return "\n\n".join(lines)


def composition_column(known: dict[str, list[Any] | None], columns: list[str], k: int | None) -> str | None:
    """The text column whose number of distinct values is closest to the number of clusters."""
    text = [c for c in columns if c != "cluster" and known.get(c)]
    return min(text, key=lambda c: abs(len(known[c] or []) - (k or 0))) if text else None


def details_markdown(details: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in details.items())
    return f"| field | value |\n|---|---|\n{rows}"


def default_images(ctx: UIContext, dataset: str) -> str | None:
    """An ``images.h5`` next to the dataset or one level up, when there is one."""
    path = Path(dataset)
    for folder in (path.parent, path.parent.parent):
        candidate = str(folder / "images.h5")
        if candidate in ctx.roots.image_stores():
            return candidate
    return None


def build(ctx: UIContext) -> Any:
    """Lay out the tab; returns the handler that forgets a session's exploration when its page closes."""
    with gr.Tab("Explore", id="explore"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320, elem_classes="rm-panel"):
                gr.Markdown("### Data")
                dataset = gr.Dropdown(
                    ctx.roots.datasets(), label="Dataset", allow_custom_value=True, elem_id="ex-dataset"
                )
                images = gr.Dropdown(
                    ctx.roots.image_stores(), label="Image store (HDF5 fallback)", allow_custom_value=True
                )
                gr.Markdown("### Filter")
                with gr.Row():
                    f_column = gr.Dropdown([], label="Column", elem_id="ex-filter-column", min_width=120)
                    f_values = gr.Dropdown([], multiselect=True, label="Values", elem_id="ex-filter-values")
                with gr.Row():
                    f_add = gr.Button("Add filter", size="sm", elem_id="ex-filter-add")
                    f_clear = gr.Button("Clear filters", size="sm", variant="secondary")
                f_show = gr.Markdown(filters_markdown({}), elem_id="ex-filters")
                gr.Markdown("### Sample, cluster, project")
                with gr.Row():
                    sample = gr.Number(20_000, label="Sample size", precision=0, elem_id="ex-sample", min_width=100)
                    k = gr.Number(8, label="Clusters (0 = none)", precision=0, elem_id="ex-k", min_width=100)
                with gr.Row():
                    backend = gr.Dropdown(list(CLUSTER_BACKENDS), value="auto", label="Clustering backend")
                    projection = gr.Dropdown(list(PROJECTIONS), value="pca", label="Projection", elem_id="ex-proj")
                run = gr.Button("Explore", variant="primary", elem_id="ex-run")
                message = gr.HTML(elem_id="ex-message")
            with gr.Column(scale=4, min_width=480, elem_classes="rm-panel"):
                with gr.Row():
                    color = gr.Dropdown([], label="Colour by", elem_id="ex-color", scale=2)
                    zoom_in = gr.Button("Zoom to selection", size="sm", scale=1)
                    zoom_out = gr.Button("Whole map", size="sm", scale=1)
                scatter = scatter_component("ex-scatter")
                summary = gr.Markdown(elem_id="ex-summary")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=240):
                        image = gr.Image(label="Clicked point", type="pil", height=200, elem_id="ex-image")
                        details = gr.Markdown(elem_id="ex-details", elem_classes="rm-details")
                    gallery = gr.Gallery(
                        label="Nearest neighbours", columns=4, height=380, elem_id="ex-neighbours", scale=3
                    )
                with gr.Row():
                    comp_column = gr.Dropdown([], label="Cluster composition by", elem_id="ex-comp-column", scale=1)
                    export_name = gr.Textbox(
                        "selection.parquet", label="Export selection to", scale=1, elem_id="ex-export-name"
                    )
                    export = gr.Button("Export", size="sm", scale=0, elem_id="ex-export")
                export_links = gr.HTML(elem_id="ex-export-links")
                comp = gr.Dataframe(interactive=False, wrap=True, elem_id="ex-composition", max_height=320)
        filters = gr.State({})
        known = gr.State({})
        selection = gr.State({"positions": [], "box": None})

    async def on_dataset(path: str | None) -> tuple[Any, ...]:
        if not path:
            return {}, gr.update(choices=[]), gr.update(), ""
        try:
            cols = await ctx.explorer().columns.remote(path)
        except PathRefused as e:
            return {}, gr.update(choices=[]), gr.update(), render.message(f"Refused: {user_message(e)}", "error")
        except (*USER_ERRORS, RuntimeError) as e:
            return {}, gr.update(choices=[]), gr.update(), render.message(user_message(e), "error")
        filterable = [c for c, v in cols.items() if v is not None]
        return cols, gr.update(choices=filterable, value=None), gr.update(value=default_images(ctx, path)), ""

    def on_column(column: str | None, cols: dict[str, Any]) -> Any:
        return gr.update(choices=(cols.get(column) or []) if column else [], value=[])

    def on_add(column: str | None, values: list[Any], current: dict[str, list[Any]]) -> tuple[Any, ...]:
        if not column or not values:
            return current, filters_markdown(current), render.message("Pick a column and at least one value.", "error")
        updated = {**current, column: list(values)}
        return updated, filters_markdown(updated), ""

    async def on_run(
        dataset_path: Any,
        image_store: Any,
        filters: Any,
        sample_size: Any,
        clusters: Any,
        clustering_backend: Any,
        projection: Any,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Check everything (the page can be bypassed), then explore in the actor; the replica only awaits."""
        keep = (gr.update(),) * 6
        try:
            cols = await ctx.explorer().columns.remote(dataset_path) if dataset_path else {}
            req = parse_explore_request(
                ctx.roots,
                dataset_path,
                filters,
                sample_size,
                clusters,
                clustering_backend,
                projection,
                image_store,
                cols,
            )
            view = await ctx.explorer().run.remote(request.session_hash, req, None)
        except PathRefused as e:
            log.warning("refused a path from the page: %s", e)
            return (render.message(f"Refused: {user_message(e)}", "error"), *keep)
        except (*USER_ERRORS, RuntimeError) as e:
            return (render.message(user_message(e), "error"), *keep)
        columns = view["columns"]
        text_columns = [c for c in columns if c != "cluster" and cols.get(c)]
        comp_update = gr.update(choices=text_columns, value=composition_column(cols, columns, req.cluster_k))
        return (
            render.message(f"Explored {view['summary']['points']:,} points.", "ok"),
            view["scatter"],
            summary_markdown(view["summary"]),
            gr.update(choices=columns, value=view["color_by"]),
            comp_update,
            {"positions": [], "box": None},
            "",
        )

    async def on_color(column: str | None, request: gr.Request) -> Any:
        try:
            view = await ctx.explorer().view.remote(request.session_hash, column)
        except USER_ERRORS:
            return gr.update()
        return view["scatter"]

    async def on_point(evt: gr.EventData, request: gr.Request) -> tuple[Any, ...]:
        try:
            found = await ctx.explorer().point.remote(request.session_hash, int(evt.position))
        except (*USER_ERRORS, RuntimeError, AttributeError) as e:
            return None, render.message(user_message(e), "error"), []
        return found["image"], details_markdown(found["details"]), found["gallery"]

    def on_select(evt: gr.EventData) -> tuple[dict[str, Any], str]:
        positions = [int(p) for p in evt.index]
        note = f"{len(positions):,} points selected" + (": zoom to them or export them." if positions else ".")
        return {"positions": positions, "box": list(evt.value)}, render.message(note, "info")

    async def on_zoom_in(sel: dict[str, Any], col: str | None, request: gr.Request) -> tuple[Any, str]:
        if not sel.get("box"):
            return gr.update(), render.message("Drag a box on the map first.", "error")
        return await zoom(sel["box"], col, request)

    async def on_zoom_out(col: str | None, request: gr.Request) -> tuple[Any, str]:
        return await zoom(None, col, request)

    async def zoom(box: list[float] | None, col: str | None, request: gr.Request) -> tuple[Any, str]:
        try:
            explorer = ctx.explorer()
            await explorer.zoom.remote(request.session_hash, *((box[:2], box[2:]) if box else (None, None)))
            view = await explorer.view.remote(request.session_hash, col)
        except (*USER_ERRORS, RuntimeError) as e:
            return gr.update(), render.message(user_message(e), "error")
        return view["scatter"], ""

    async def on_comp(column: str | None, request: gr.Request) -> Any:
        if not column:
            return None
        try:
            return await ctx.explorer().composition.remote(request.session_hash, column)
        except USER_ERRORS as e:
            return pd.DataFrame({"note": [user_message(e)]})

    async def on_export(sel: dict[str, Any], name: Any, request: gr.Request) -> str:
        try:
            out = parse_export(ctx.roots, name)
            written = await ctx.explorer().export.remote(request.session_hash, sel.get("positions") or [], str(out))
        except PathRefused as e:
            return render.message(f"Refused: {user_message(e)}", "error")
        except (*USER_ERRORS, RuntimeError) as e:
            return render.message(user_message(e), "error")
        what = f"{len(sel.get('positions') or []):,} selected points" if sel.get("positions") else "all points"
        return render.message(f"Exported {what}.", "ok") + render.downloads_html({Path(written).name: written})

    dataset.change(on_dataset, dataset, [known, f_column, images, message], api_visibility="private")
    f_column.change(on_column, [f_column, known], f_values, api_visibility="private")
    f_add.click(on_add, [f_column, f_values, filters], [filters, f_show, message], api_visibility="private")
    f_clear.click(lambda: ({}, filters_markdown({})), outputs=[filters, f_show], api_visibility="private")
    run.click(
        on_run,
        [dataset, images, filters, sample, k, backend, projection],
        [message, scatter, summary, color, comp_column, selection, export_links],
        api_name="explore",
    ).then(on_comp, comp_column, comp, api_visibility="private")
    color.input(on_color, color, scatter, api_visibility="private")
    scatter.click(on_point, None, [image, details, gallery], api_visibility="private")
    scatter.select(on_select, None, [selection, message], api_visibility="private")
    zoom_in.click(on_zoom_in, [selection, color], [scatter, message], api_visibility="private")
    zoom_out.click(on_zoom_out, color, [scatter, message], api_visibility="private")
    comp_column.input(on_comp, comp_column, comp, api_visibility="private")
    export.click(on_export, [selection, export_name], export_links, api_name="export_selection")

    async def forget(request: gr.Request) -> None:
        if request and request.session_hash:
            await ctx.explorer().forget.remote(request.session_hash)

    return forget
