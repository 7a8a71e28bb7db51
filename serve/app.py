"""The Serve application: a FastAPI app with the Gradio page at /ui and guarded downloads at /files.

``serve run serve.app:app`` serves the data roots named in ``RAYMAP_DATA_ROOTS`` (default: the
working directory); ``serve run serve.app:app_builder data_roots=/a:/b jobs_address=http://...``
takes them as arguments; ``raymap serve`` adds host/port options and starts Ray when needed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import serve
from ray.serve import Application

from serve.context import UIConfig, UIContext
from serve.paths import PathRefused

log = logging.getLogger(__name__)
APP_NAME = "raymap-ui"
MAX_CONCURRENT_EVENTS = 16  # per event listener: several users at once; long work runs in Ray anyway


def build_asgi_app(config: UIConfig) -> Any:
    """FastAPI + mounted Gradio. Built on the replica (Serve's late-bound ingress), never in the driver."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, RedirectResponse

    from serve.render import FILES_ROUTE
    from serve.ui import CSS, THEME, build_blocks

    ctx = UIContext(config)
    app = FastAPI(title="raymap", docs_url=None, redoc_url=None)

    @app.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "data_roots": ctx.roots.display_roots()}

    @app.get(FILES_ROUTE)
    def files(path: str) -> FileResponse:
        """Download one file under the data roots; anything else is 403 (outside) or 404 (missing)."""
        try:
            real = ctx.roots.resolve(path, what="download")
        except PathRefused as e:
            log.warning("refused download: %s", e)
            raise HTTPException(status_code=403, detail=str(e)) from None
        except FileNotFoundError as e:
            raise HTTPException(status_code=404, detail=str(e)) from None
        if not real.is_file():
            raise HTTPException(status_code=400, detail=f"download {path!r} is a folder, not a file")
        return FileResponse(real, filename=real.name)

    blocks = build_blocks(ctx).queue(default_concurrency_limit=MAX_CONCURRENT_EVENTS)
    # No component takes uploads: max_file_size=0 keeps Gradio's upload route from writing outside the roots.
    return gr.mount_gradio_app(app, blocks, path="/ui", theme=THEME, css=CSS, footer_links=[], max_file_size=0)


@serve.ingress()
class RaymapUI:
    """The replica: holds the config; Serve calls ``__serve_build_asgi_app__`` after construction."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config

    def __serve_build_asgi_app__(self) -> Any:
        return build_asgi_app(self.config)


def application(config: UIConfig) -> Application:
    """The bound Serve application; ``num_cpus=0`` keeps the replica off the cores the compute needs."""
    deployment = serve.deployment(name="RaymapUI", ray_actor_options={"num_cpus": 0})(RaymapUI)
    return deployment.bind(config)


def app_builder(args: dict[str, str]) -> Application:
    """``serve run serve.app:app_builder data_roots=/a:/b jobs_address=http://127.0.0.1:8265``."""
    unknown = set(args) - {"data_roots", "jobs_address"}
    if unknown:
        raise ValueError(f"unknown arguments {sorted(unknown)}; accepted: data_roots, jobs_address")
    env = UIConfig.from_env()
    roots = [os.path.abspath(r) for r in args.get("data_roots", "").split(os.pathsep) if r] or env.data_roots
    return application(UIConfig(tuple(roots), args.get("jobs_address") or env.jobs_address))


def run(config: UIConfig, host: str = "127.0.0.1", port: int = 8000) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the UI on the connected Ray; returns the URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(config), name=APP_NAME, route_prefix="/")
    url = f"http://{host}:{port}/ui/"
    log.info("raymap UI at %s (data roots: %s)", url, ", ".join(config.data_roots))
    return url


app = application(UIConfig.from_env())
