"""The Gradio page: header, the Map / Explore / Jobs tabs, and the look (theme + CSS)."""

from __future__ import annotations

import gradio as gr

from serve import explore_tab, jobs_tab, map_tab
from serve.context import UIContext

THEME = gr.themes.Soft(primary_hue="teal", secondary_hue="slate", neutral_hue="slate")
CSS = """
.gradio-container { max-width: 1500px !important; }
.rm-header h1 { margin-bottom: 0; }
.rm-header p { margin-top: 2px; color: var(--body-text-color-subdued); }
.rm-panel { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 14px; }
.rm-hint { font-size: 0.9em; color: var(--body-text-color-subdued); }
.rm-msg { padding: 8px 12px; border-radius: 8px; margin: 4px 0; font-size: 0.95em; }
.rm-info { background: var(--background-fill-secondary); }
.rm-ok { background: #e6f6ef; color: #13603d; border: 1px solid #9fd9bd; }
.rm-error { background: #fdecea; color: #8a1c12; border: 1px solid #f3b3aa; }
.rm-progress { margin: 6px 0 10px; }
.rm-bar { height: 12px; border-radius: 6px; background: var(--background-fill-secondary); overflow: hidden; }
.rm-bar > div { height: 100%; background: linear-gradient(90deg, #14b8a6, #0f766e); transition: width .4s; }
.rm-progress-text { font-size: 0.9em; margin-top: 4px; }
.rm-confusion { overflow-x: auto; }
.rm-confusion table { border-collapse: collapse; font-size: 0.8em; }
.rm-confusion caption { caption-side: top; text-align: left; padding: 4px 0 8px; color: var(--body-text-color-subdued); }
.rm-confusion td { text-align: center; min-width: 26px; padding: 2px 4px; border: 1px solid #eee; }
.rm-confusion th { padding: 2px 6px; font-weight: 500; white-space: nowrap; text-align: right; }
.rm-confusion th.rm-rot { height: 90px; vertical-align: bottom; text-align: left; }
.rm-confusion th.rm-rot > span { writing-mode: vertical-rl; transform: rotate(180deg); }
.rm-downloads { margin: 6px 0; }
.rm-details { font-size: 0.85em; max-height: 300px; overflow-y: auto; }
.rm-details table { width: 100%; font-size: 0.9em; }
.rm-details td:first-child { white-space: nowrap; font-weight: 500; }
#ex-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
"""


def build_blocks(ctx: UIContext) -> gr.Blocks:
    """One Blocks app per replica; every session shares ``ctx`` (roots, job client, summary cache)."""
    with gr.Blocks(title="raymap") as blocks:
        gr.Markdown(
            "# raymap\nMap query embeddings onto a labelled reference and explore embedding collections — "
            f"on Ray. Data roots: {', '.join(f'`{r}`' for r in ctx.roots.display_roots())}",
            elem_classes="rm-header",
        )
        with gr.Tabs() as tabs:
            mapping = map_tab.build(ctx)
            forget = explore_tab.build(ctx)
            jobs_tab.build(ctx, tabs, mapping)
        blocks.unload(forget)
    return blocks
