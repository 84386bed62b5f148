"""The Train Planner tab: the page (planner and trainer) plus the WebUI's own pieces above it: the
WebUI's progress bar and live preview for a run (javascript/trainplan.js attaches them with the
WebUI's requestProgress), Interrupt, and, where the WebUI has a Train tab (AUTOMATIC1111; Forge
has none), "Apply to the WebUI's Train tab" (javascript/trainplan.js writes the plan into the
built-in Textual Inversion fields). The host's notice (what Start does to the loaded model) is
shown by the page beside its Start buttons, on the Train and LR range test tabs. Works on
gradio 3.41 (AUTOMATIC1111) and 4.40 (Forge).
"""
from __future__ import annotations

import inspect

from ..ui.hooks import UiHooks

PROGRESS_HTML = ('<div class="stp-webui-progress"><div id="stp_webui_progress"></div>'
                 '<div id="stp_webui_preview" class="stp-webui-preview"></div>'
                 '<div id="stp_webui_textinfo" class="stp-webui-textinfo"></div></div>')


def build_page(hooks: UiHooks):
    """The page from ui/: given the hooks when its builder takes them (the trainer panel does)."""
    from ..ui.planner_panel import build_planner
    if "hooks" in inspect.signature(build_planner).parameters:
        return build_planner(hooks=hooks)
    return build_planner()


def build_tab(hooks: UiHooks, train_tab: bool = True):
    """`train_tab`: the WebUI has its own Train tab to apply the plan to (AUTOMATIC1111)."""
    import gradio as gr
    page = build_page(hooks)
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row(elem_id="stp_webui_row", elem_classes=["stp-webui-row"]):
            with gr.Column(scale=5, min_width=320):
                gr.HTML(PROGRESS_HTML, elem_id="stp_webui_progress_box")
            if train_tab or hooks.can_train:
                with gr.Column(scale=2, min_width=220):
                    if train_tab:
                        gr.Button("Apply to the WebUI's Train tab", elem_id="stp_apply_webui_train")
                    if hooks.can_train:
                        stop = gr.Button("Interrupt", elem_id="stp_webui_interrupt")
                        stop.click(fn=interrupt, inputs=[], outputs=[], queue=False)
        page.render()
    return tab


def interrupt() -> None:
    from modules import shared
    shared.state.interrupt()
