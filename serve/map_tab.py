"""The Map tab: pick query and reference under the data roots, submit a map job, follow it, read its results."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from raymap.kernels import KERNELS
from serve import render
from serve.context import UIContext
from serve.datainfo import dataset_info, is_identifier
from serve.params import K_MAX, parse_map_request
from serve.paths import PathRefused
from serve.results import ResultSummary

log = logging.getLogger(__name__)
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
LOG_LINES = 40
POLL_S = 1.0
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


@dataclass(slots=True)
class MapTab:
    """Components other tabs drive: the job the Map tab follows."""

    job: gr.Dropdown


def default_labels(ref_columns: dict[str, str], query_columns: dict[str, str]) -> list[str]:
    """Label columns to preselect: categorical in both, not identifiers; the first such column."""
    common = [c for c, kind in ref_columns.items() if kind == "categorical" and c in query_columns]
    return [c for c in common if not is_identifier(str(c))][:1]


def default_out(ctx: UIContext, query: str, reference: str) -> str:
    """``<query>_on_<reference>.zarr`` in the first data root, numbered when taken."""
    stem = f"{_stem(query)}_on_{_stem(reference)}"
    root = ctx.roots.roots[0]
    name, i = f"{stem}.zarr", 2
    while (root / name).exists():
        name, i = f"{stem}_{i}.zarr", i + 1
    return name


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".parquet", ".h5ad", ".npy", ".zarr"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name) or "data"


def build(ctx: UIContext) -> MapTab:
    """Lay out the tab and wire its events; handlers only talk to the job server and await Ray tasks."""
    datasets = ctx.roots.datasets()
    with gr.Tab("Map", id="map"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340, elem_classes="rm-panel"):
                gr.Markdown("### 1 · Data")
                query = gr.Dropdown(
                    datasets, label="Query (to be labelled)", allow_custom_value=True, elem_id="map-query"
                )
                reference = gr.Dropdown(
                    datasets, label="Reference (labelled atlas)", allow_custom_value=True, elem_id="map-reference"
                )
                with gr.Row():
                    info = gr.Markdown(elem_classes="rm-hint")
                    refresh = gr.Button("Rescan data roots", size="sm", variant="secondary", scale=0)
                gr.Markdown("### 2 · Parameters")
                labels = gr.Dropdown(  # custom values allowed: the server checks them against the reference
                    [],
                    multiselect=True,
                    allow_custom_value=True,
                    label="Label columns to transfer",
                    elem_id="map-labels",
                )
                with gr.Row():
                    k = gr.Number(30, label=f"k (1–{K_MAX})", precision=0, elem_id="map-k", min_width=80)
                    kernel = gr.Dropdown(list(KERNELS), value="gauss", label="Kernel", min_width=120)
                    index = gr.Textbox("auto", label="Index", elem_id="map-index", min_width=100)
                out = gr.Textbox(label="Output store (under a data root)", elem_id="map-out")
                submit = gr.Button("Submit mapping job", variant="primary", elem_id="map-submit")
                message = gr.HTML(elem_id="map-message")
            with gr.Column(scale=3, min_width=420, elem_classes="rm-panel"):
                gr.Markdown("### 3 · Progress and results")
                job = gr.Dropdown([], label="Job", allow_custom_value=True, elem_id="map-job")
                progress = gr.HTML(render.progress_html("no job yet", "", 0, 0, None, None), elem_id="map-progress")
                with gr.Accordion("Job log", open=False):
                    logs = gr.Textbox(lines=10, max_lines=10, show_label=False, autoscroll=True, elem_id="map-logs")
                summary_md = gr.Markdown(elem_id="map-summary")
                field = gr.Dropdown([], label="Transferred field", visible=False, elem_id="map-field")
                with gr.Row():
                    counts = gr.BarPlot(
                        x="label", y="rows", sort="-y", title="Predicted labels", height=320, x_label_angle=-90
                    )
                    hist = gr.BarPlot(x="value", y="rows", title="Confidence", height=320, x_label_angle=-90)
                confusion = gr.HTML(elem_id="map-confusion")
                downloads = gr.HTML(elem_id="map-downloads")
        timer = gr.Timer(POLL_S, active=False)
        finished = gr.State(None)

    def rescan() -> tuple[Any, Any]:
        found = ctx.roots.datasets()
        return gr.update(choices=found), gr.update(choices=found)

    def describe(query_path: str | None, ref_path: str | None) -> tuple[str, Any, str]:
        """Dataset sizes, label-column choices from the reference, a free output name."""
        notes: list[str] = []
        ref_cols: dict[str, str] = {}
        query_cols: dict[str, str] = {}
        for role, value in (("query", query_path), ("reference", ref_path)):
            if not value:
                continue
            try:
                meta = dataset_info(ctx.roots.resolve(value, what=role))
            except USER_ERRORS as e:
                notes.append(f"**{role}**: ⚠ {e}")
                continue
            notes.append(f"**{role}**: {meta.describe()}")
            (query_cols if role == "query" else ref_cols).update(meta.columns)
        chosen = default_labels(ref_cols, query_cols)
        name = default_out(ctx, query_path, ref_path) if query_path and ref_path else ""
        return "\n\n".join(notes), gr.update(choices=list(ref_cols), value=chosen), name

    def on_submit(
        query_path: Any,
        reference_path: Any,
        output: Any,
        label_columns: Any,
        k: Any,
        kernel: Any,
        index: Any,
    ) -> tuple[Any, ...]:
        """Check every value here (the page can be bypassed), then submit; errors go to the page."""
        try:
            ref = ctx.roots.resolve(reference_path, what="reference") if reference_path else None
            kinds = dataset_info(ref).columns if ref else {}
            request = parse_map_request(
                ctx.roots, query_path, reference_path, output, label_columns, k, kernel, index, kinds
            )
            job_id = ctx.client().submit_map(
                str(request.query), str(request.reference), str(request.out), **request.map_kwargs()
            )
        except PathRefused as e:
            log.warning("refused a path from the page: %s", e)
            return render.message(f"Refused: {e}", "error"), gr.update(), gr.update()
        except USER_ERRORS as e:
            return render.message(str(e), "error"), gr.update(), gr.update()
        except (ConnectionError, RuntimeError) as e:
            return render.message(f"Job server unavailable: {e}", "error"), gr.update(), gr.update()
        log.info("submitted map job %s: %s", job_id, request)
        text = f"Submitted job {job_id}: {request.query.name} → {request.reference.name}, k={request.k}"
        return render.message(text, "ok"), gr.update(choices=[job_id], value=job_id), gr.Timer(active=True)

    def poll(job_id: str | None) -> tuple[Any, ...]:
        """One tick: status, latest progress line and the log tail; stops polling when the job ends."""
        from raymap.jobs.progress import parse_progress

        if not job_id:
            return gr.update(), gr.update(), gr.Timer(active=False), None
        try:
            client = ctx.client()
            status = client.status(job_id)
            text = client.logs(job_id)
        except (ConnectionError, RuntimeError, ValueError) as e:
            return render.message(f"Cannot follow job {job_id}: {e}", "error"), "", gr.Timer(active=False), None
        p = parse_progress(text)
        bar = render.progress_html(
            status, p.get("phase", ""), p.get("done", 0), p.get("total", 0), p.get("rows_per_s"), p.get("eta_s")
        )
        tail = "\n".join(text.splitlines()[-LOG_LINES:])
        done = status in TERMINAL
        return bar, tail, gr.Timer(active=not done), (job_id if status == "SUCCEEDED" else None)

    async def show_results(job_id: str | None, chosen: str | None = None) -> tuple[Any, ...]:
        blank = ("", gr.update(visible=False), None, None, "", "")
        if not job_id:
            return blank
        try:
            summary = await load_summary(ctx, job_id)
        except PathRefused as e:
            return (render.message(f"Refused: {e}", "error"), *blank[1:])
        except (*USER_ERRORS, RuntimeError, ConnectionError) as e:
            return (render.message(f"No results for job {job_id}: {e}", "error"), *blank[1:])
        names = list(summary.fields)
        name = chosen if chosen in summary.fields else (names[0] if names else None)
        field_update = gr.update(choices=names, value=name, visible=bool(names))
        links = render.downloads_html({"predictions (CSV)": summary.predictions_csv})
        if name is None:
            return render.summary_markdown(summary), field_update, None, None, "", links
        f = summary.fields[name]
        hist_title = "Confidence" if f.kind == "categorical" else f"Predicted {name}"
        return (
            render.summary_markdown(summary),
            field_update,
            gr.update(value=render.counts_frame(f) if f.counts else None, title=f"Predicted {name}"),
            gr.update(value=render.hist_frame(f), title=hist_title),
            render.confusion_html(f.confusion) if f.kind == "categorical" else "",
            links,
        )

    results = [summary_md, field, counts, hist, confusion, downloads]
    refresh.click(rescan, outputs=[query, reference], api_visibility="private")
    for picker in (query, reference):
        picker.change(describe, [query, reference], [info, labels, out], api_visibility="private")
    submit.click(
        on_submit, [query, reference, out, labels, k, kernel, index], [message, job, timer], api_name="submit_map"
    )
    job.change(lambda j: (gr.Timer(active=bool(j)), None), job, [timer, finished], api_visibility="private")
    timer.tick(poll, job, [progress, logs, timer, finished], api_visibility="private", show_progress="hidden")
    finished.change(show_results, finished, results, api_visibility="private")
    field.input(show_results, [job, field], results, api_visibility="private")
    return MapTab(job)


async def load_summary(ctx: UIContext, job_id: str) -> ResultSummary:
    """Open a finished job's store, refuse it when it lies outside the data roots, summarise it once."""
    from raymap import MappingResult
    from raymap.client import OUT

    info = ctx.client().info(job_id)
    if info["status"] != "SUCCEEDED":
        raise RuntimeError(f"job {job_id} is {info['status']}")
    out = ctx.roots.resolve(str(info["metadata"].get(OUT, "")), what="job output")
    result = MappingResult(out)
    fields = {name: str(result.store.group[f"transfer/{name}"].attrs.get("kind")) for name in result.fields()}
    query = str(result.attrs.get("query", "")).split(" [")[0]
    try:
        query_path: str | None = str(ctx.roots.resolve(query, what="job query"))
    except (PathRefused, FileNotFoundError):
        query_path = None  # no true labels from outside the roots
    return await ctx.summary(str(out), query_path, fields)
