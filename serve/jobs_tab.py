"""The Jobs tab: every job of the cluster with status, duration and parameters; cancel; open results."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import gradio as gr

from serve import render
from serve.context import UIContext
from serve.map_tab import TERMINAL, MapTab
from serve.paths import PathRefused

log = logging.getLogger(__name__)
REFRESH_S = 5.0


def job_row(ctx: UIContext, job: dict[str, Any], now: float) -> dict[str, Any]:
    """One table row; parameters come from the job's mapping store (written when the job starts)."""
    from raymap.client import KIND, OUT

    meta = job.get("metadata") or {}
    start, end = job.get("start_time"), job.get("end_time")
    row = {
        "job": job["id"],
        "status": job["status"],
        "submitted": dt.datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M:%S") if start else "",
        "duration": render.duration((end or now) - start) if start else "",
        "query": "",
        "reference": "",
        "parameters": meta.get(KIND, "not raymap"),
        "output": "",
    }
    out = meta.get(OUT)
    if not out:
        return row
    try:
        path = ctx.roots.resolve(str(out), must_exist=False, what="job output")
    except (PathRefused, FileNotFoundError):
        row["output"] = "(outside the data roots)"
        return row
    row["output"] = str(path)
    attrs = store_attrs(str(path))
    if attrs:
        row["query"] = _name(attrs.get("query"))
        row["reference"] = _name(attrs.get("reference"))
        row["parameters"] = f"k={attrs.get('k')} {attrs.get('kernel')} {attrs.get('index_factory') or ''}".strip()
    return row


def store_attrs(path: str) -> dict[str, Any]:
    """A mapping store's attributes, or {} while it does not exist yet."""
    import zarr

    try:
        return dict(zarr.open_group(path, mode="r").attrs)
    except FileNotFoundError:  # zarr's GroupNotFoundError is one too
        return {}


def _name(described: Any) -> str:
    return str(described or "").split(" [")[0].rstrip("/").rsplit("/", 1)[-1]


def build(ctx: UIContext, tabs: gr.Tabs, map_tab: MapTab) -> gr.Tab:
    with gr.Tab("Jobs", id="jobs") as tab:
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm", scale=0)
            selected = gr.Textbox(label="Selected job", placeholder="click a row", scale=2, elem_id="jobs-selected")
            open_btn = gr.Button("Open results", variant="primary", scale=0, elem_id="jobs-open")
            cancel = gr.Button("Cancel job", variant="stop", scale=0, elem_id="jobs-cancel")
        message = gr.HTML(elem_id="jobs-message")
        table = gr.Dataframe(render.jobs_frame([]), interactive=False, wrap=True, elem_id="jobs-table", max_height=600)
        timer = gr.Timer(REFRESH_S)

    def list_jobs() -> Any:
        try:
            jobs = ctx.client().list()
        except (ConnectionError, RuntimeError) as e:
            log.warning("cannot list jobs: %s", e)
            return gr.update()
        now = time.time()
        submitted = [j for j in jobs if j.get("type") != "DRIVER"]  # drivers (this UI's own) are not jobs
        return render.jobs_frame([job_row(ctx, j, now) for j in submitted])

    def pick(evt: gr.SelectData) -> str:
        return str(evt.row_value[0]) if evt.row_value else ""

    def on_cancel(job_id: str) -> tuple[str, Any]:
        if not job_id:
            return render.message("Select a job first.", "error"), gr.update()
        try:
            stopped = ctx.client().cancel(job_id.strip())
        except (ConnectionError, RuntimeError, ValueError) as e:
            return render.message(f"Cannot cancel {job_id}: {e}", "error"), gr.update()
        text = f"Cancelling {job_id}." if stopped else f"{job_id} had already ended."
        return render.message(text, "ok"), list_jobs()

    def on_open(job_id: str) -> tuple[Any, ...]:
        job_id = (job_id or "").strip()
        if not job_id:
            return render.message("Select a job first.", "error"), gr.update(), gr.update()
        try:
            status = ctx.client().status(job_id)
        except (ConnectionError, RuntimeError, ValueError) as e:
            return render.message(f"Unknown job {job_id}: {e}", "error"), gr.update(), gr.update()
        note = "" if status in TERMINAL else f"{job_id} is {status}: following it in the Map tab."
        return render.message(note, "ok"), gr.Tabs(selected="map"), gr.update(choices=[job_id], value=job_id)

    refresh.click(list_jobs, outputs=table, api_visibility="private")
    timer.tick(list_jobs, outputs=table, api_visibility="private", show_progress="hidden")
    tab.select(list_jobs, outputs=table, api_visibility="private")
    table.select(pick, outputs=selected, api_visibility="private")
    cancel.click(on_cancel, selected, [message, table], api_name="cancel_job")
    open_btn.click(on_open, selected, [message, tabs, map_tab.job], api_visibility="private")
    return tab
