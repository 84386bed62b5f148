"""The few places where gradio 3.41 (AUTOMATIC1111's pin) and 4.40 (Forge's pin) differ.

Everything else in ui/ uses the API the two versions share: Blocks, Row/Column/Accordion,
Textbox/Dropdown/Radio/Checkbox/HTML/Button, `.input`/`.click`, `gr.update(...)`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

import gradio as gr

GRADIO_MAJOR = int(gr.__version__.split(".")[0])

# Fonts the browser already has: gradio's default theme asks Google Fonts for its faces, and the
# page must work (and look the same) on a machine with no internet.
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
        "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "DejaVu Sans Mono", "monospace"]


def live_event() -> Dict[str, Any]:
    """Keyword arguments for the recompute-on-every-change events.

    No queue (a plain request, the quickest round trip), no progress overlay (the tables would
    flicker on every keystroke), not in the API page. gradio 4 drops an event fired while the
    same event is pending unless trigger_mode is "always_last"; gradio 3.41 has no such option
    and always drops it, and requests of different fields may finish out of order. See `on_each`
    and planner_panel._wire's settle step: the page always ends on what was typed.
    """
    kw: Dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_name": False}
    if GRADIO_MAJOR >= 4:
        kw["trigger_mode"] = "always_last"
    return kw


def on_each(triggers: List[Any], fn: Callable, inputs: List[Any], outputs: List[Any]) -> List[Any]:
    """One handler for many triggers, e.g. the `.input` of every field.

    gradio 4: one dependency for all of them (`gr.on`), so with "always_last" a change made while
    another is computing is sent after it, in order: nothing is dropped or overtaken.
    gradio 3.41: one dependency per trigger (it has no gr.on); the caller adds a settle step.
    Returns the events that still need a settle step.
    """
    if GRADIO_MAJOR >= 4:
        gr.on(triggers=triggers, fn=fn, inputs=inputs, outputs=outputs, **live_event())
        return []
    return [t(fn, inputs, outputs, **live_event()) for t in triggers]


def theme() -> Any:
    """The default look with local fonts only (no request to a font CDN)."""
    return gr.themes.Default(primary_hue="orange", secondary_hue="blue", neutral_hue="slate",
                             font=SANS, font_mono=MONO)


def stream_event() -> Dict[str, Any]:
    """Keyword arguments for a generator that follows a job (ui/trainer_events.follow).

    Queued (generators need the queue on both versions), no progress overlay, not in the API.
    gradio 4 runs one event of a kind at a time unless told otherwise: every open page follows
    the job at once. gradio 3.41 has one worker pool for the whole app, set by `enable_queue`
    (the WebUI sets 64 itself).
    """
    kw: Dict[str, Any] = {"queue": True, "show_progress": "hidden", "api_name": False}
    if GRADIO_MAJOR >= 4:
        kw["concurrency_limit"] = None
    return kw


def on_load(fn: Callable, inputs: List[Any], outputs: List[Any], **kw: Any) -> None:
    """Run `fn` when a page opens. `Blocks.load` needs the Blocks object: the one being built (the
    tab's own Blocks inside the WebUI, whose events are copied into the WebUI's when it renders)."""
    from gradio.context import Context
    root = Context.root_block
    if root is None:
        raise RuntimeError("build the page inside a gr.Blocks()")
    root.load(fn, inputs, outputs, **kw)


def enable_queue(blocks: Any, workers: int = 8) -> Any:
    """The queue the job-following generators need (gradio 4 has it on by default)."""
    if GRADIO_MAJOR >= 4:
        return blocks.queue(default_concurrency_limit=workers)
    return blocks.queue(concurrency_count=workers)


def select_tab(tab_id: str) -> Any:
    """An update that selects the tab with this id (gr.Tabs on both versions)."""
    return gr.update(selected=tab_id)
