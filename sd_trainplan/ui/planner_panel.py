"""The Train Planner tab's planner panel: inputs on the left, the live plan on the right.

`build_planner_panel()` builds the panel inside a Blocks the caller has open and returns its
components, so the trainer can be wired to it (page.py puts it in the page's Plan tab; the
page's `build_planner()` is what the WebUI's on_ui_tabs hands back and the standalone app
serves). The same code runs on gradio 3.41.2 and 4.40.0 (compat.py holds the differences).
There is no "calculate" button: every input recomputes and redraws the plan at once.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Dict, List, Optional, Tuple

import gradio as gr

from ..plan.presets import Preset, load_presets
from . import compat
from .dataset import count_images
from .fields import ALL, DATASET, SECTIONS, WIDGETS, Widget, preset_values
from .view import View, make_view, preset_note

DEFAULT_PRESET = "dreambooth_advanced"
KEYS: Tuple[str, ...] = tuple(w.key for w in ALL)


@dataclass
class PlannerPanel:
    """The panel's components, by widget key (plan field names, plus 'dataset')."""
    inputs: Dict[str, Any]
    messages: Dict[str, Any]
    preset: Any
    preset_note: Any
    cards: Any
    status: Any
    plot: Any
    tables: Any
    apply: Any
    apply_message: Any
    presets: Dict[str, Preset]
    state: Any = None       # gr.State: the inputs the figures on the page are for, and their messages

    def input_list(self) -> List[Any]:
        return [self.inputs[k] for k in KEYS]


def build_planner(css: Optional[str] = None, theme: Any = None, title: str = "Train Planner", hooks: Any = None,
                  model: str = "") -> gr.Blocks:
    """The whole page (Plan, Train and LR range test tabs) as a Blocks; see page.build_planner. Kept
    here because hosts import it from this module."""
    from .page import build_planner as build
    return build(css=css, theme=theme, title=title, hooks=hooks, model=model)


def _component(w: Widget, value: Any) -> Any:
    common = dict(label=w.label, elem_id=w.elem_id, interactive=True)
    if w.kind == "text":
        return gr.Textbox(value=value, placeholder=w.placeholder, lines=1, max_lines=1, **common)
    if w.kind == "radio":
        return gr.Radio(choices=list(w.choices), value=value, **common)
    if w.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    return gr.Dropdown(choices=list(w.choices), value=value, allow_custom_value=w.custom, **common)


def _message(w: Widget, html: str) -> Any:
    return gr.HTML(value=html, elem_id=w.msg_id, elem_classes=["stp-msg-box"], visible=bool(html))


def build_planner_panel(preset: Optional[str] = DEFAULT_PRESET, root: bool = True) -> PlannerPanel:
    """Build the panel inside the current Blocks (or tab) and wire its events. `root`: the panel
    carries the page's #stp_root (its styles); False when the caller's page already does."""
    presets = load_presets()
    by_title = {p.title: name for name, p in presets.items()}
    start = presets.get(preset or "")
    values = preset_values(start.inputs) if start else preset_values({})
    view = make_view(values)
    inputs: Dict[str, Any] = {}
    messages: Dict[str, Any] = {}

    with gr.Column(elem_id="stp_root" if root else "stp_plan", elem_classes=["stp-root"] if root else []):
        with gr.Row(elem_classes=["stp-header"]):
            with gr.Column(scale=3, min_width=260):
                gr.HTML('<div class="stp-title"><h2>Train Planner</h2><p>Every figure of a Dreambooth, Textual'
                        " Inversion or LoRA run, with its formula and its source. Change any input: the plan"
                        " updates at once.</p></div>")
            with gr.Column(scale=4, min_width=320):
                preset_box = gr.Dropdown(choices=list(by_title), value=start.title if start else None,
                                         label="Preset", elem_id="stp_preset", interactive=True)
                note = gr.HTML(preset_note(start), elem_id="stp_preset_note")
        with gr.Row(elem_classes=["stp-main"]):
            with gr.Column(scale=5, min_width=340, elem_id="stp_inputs", elem_classes=["stp-inputs"]):
                _build_inputs(values, view, inputs, messages)
                with gr.Row(elem_classes=["stp-apply-row"]):
                    apply = gr.Button("Apply to trainer", variant="primary", elem_id="stp_apply")
                apply_msg = gr.HTML("", elem_id="stp_apply_msg", visible=False)
            with gr.Column(scale=7, min_width=420, elem_id="stp_results", elem_classes=["stp-results"]):
                cards = gr.HTML(view.cards, elem_id="stp_summary")
                status = gr.HTML(view.status, elem_id="stp_status")
                plot = gr.HTML(view.plot, elem_id="stp_lr_plot")
                tables = gr.HTML(view.tables, elem_id="stp_tables")

    panel = PlannerPanel(inputs, messages, preset_box, note, cards, status, plot, tables, apply, apply_msg, presets)
    _wire(panel, by_title)
    return panel


def _build_inputs(values: Dict[str, Any], view: View, inputs: Dict[str, Any], messages: Dict[str, Any]) -> None:
    """The form, section by section; the last section (range test, dynamic resolution) starts folded."""
    for section, rows in groupby(WIDGETS, key=lambda row: row[0].section):
        if section == "more":
            box = gr.Accordion(SECTIONS[section], open=False, elem_id="stp_more")
        else:
            gr.HTML(f'<div class="stp-section-title">{SECTIONS[section]}</div>', elem_classes=["stp-section"])
            box = nullcontext()
        with box:
            for row in rows:
                with gr.Row(elem_classes=["stp-row"]):
                    for w in row:
                        with gr.Column(scale=w.width, min_width=110, elem_classes=["stp-cell"]):
                            inputs[w.key] = _component(w, values[w.key])
                            messages[w.key] = _message(w, view.messages.get(w.key, ""))


def _outputs(panel: PlannerPanel) -> List[Any]:
    return [panel.cards, panel.status, panel.plot, panel.tables] + [panel.messages[k] for k in KEYS]


def planner_outputs(panel: PlannerPanel) -> List[Any]:
    """What `redraw` updates: the figures, every field's message, and the panel's state."""
    return _outputs(panel) + [panel.state]


def redraw(values: Dict[str, Any]) -> List[Any]:
    """Updates for `planner_outputs` after a handler outside the panel set some inputs (e.g. the
    LR range test's bounds)."""
    view = make_view(values)
    return _view_updates(view) + [_shown(view)]


def _view_updates(view: View, shown: Optional[Dict[str, str]] = None) -> List[Any]:
    """Updates for the figures and for every field's message; with `shown` (the messages on the
    page), an unchanged message is left alone: fewer updates for the browser to apply."""
    keep = gr.update()
    figures = [view.cards if view.cards is not None else keep, view.status,
               view.plot if view.plot is not None else keep, view.tables if view.tables is not None else keep]
    msgs = []
    for k in KEYS:
        m = view.messages.get(k, "")
        msgs.append(keep if shown is not None and shown.get(k) == m else gr.update(value=m, visible=bool(m)))
    return figures + msgs


def _shown(view: View) -> List[Any]:
    """What the session's state remembers: the inputs the page shows figures for, and its messages."""
    return [[view.values[k] for k in KEYS], view.messages]


def _wire(panel: PlannerPanel, by_title: Dict[str, str]) -> None:
    outputs = _outputs(panel)
    comps = panel.input_list()
    state = panel.state = gr.State(None)
    live = compat.live_event()

    def on_change(*vals: Any) -> List[Any]:
        *current, shown = vals
        view = make_view(dict(zip(KEYS, current)))
        return _view_updates(view, shown[1] if shown else None) + [_shown(view)]

    def on_folder(*vals: Any) -> List[Any]:
        view = make_view(dict(zip(KEYS, vals)), from_folder=True)
        images = view.images if view.images is not None else gr.update()
        return [images] + _view_updates(view) + [_shown(view)]

    def on_settle(*vals: Any) -> List[Any]:
        *current, shown = vals
        if shown and shown[0] == list(current):
            return [gr.update() for _ in outputs] + [shown]
        view = make_view(dict(zip(KEYS, current)))
        return _view_updates(view) + [_shown(view)]

    def on_preset(title: str, *vals: Any) -> List[Any]:
        name = by_title.get(title)
        preset = panel.presets.get(name or "")
        if preset is None:
            return [gr.update() for _ in comps] + [gr.update()] + on_settle(*vals, None)
        current = dict(zip(KEYS, vals))
        kept: Dict[str, Any] = {}
        folder = count_images(current.get(DATASET) or "")
        if folder.ok and folder.images:  # a preset sets the recipe, not the user's own data
            kept = {DATASET: current[DATASET], "images": str(folder.images)}
        values = preset_values(preset.inputs, kept)
        view = make_view(values)
        note = preset_note(preset, ("images",) if kept else ())
        return [values[k] for k in KEYS] + [note] + _view_updates(view) + [_shown(view)]

    def settle(event: Any) -> None:
        """After each change lands, redraw if the inputs moved on meanwhile: a dropped event, or an
        older request that finished after a newer one, must not leave stale figures on the page.
        gradio 3.41 also drops a settle step fired while the last one is pending: a second one
        follows it there."""
        event = event.then(on_settle, comps + [state], outputs + [state], **live)
        if compat.GRADIO_MAJOR < 4:
            event.then(on_settle, comps + [state], outputs + [state], **live)

    fields = [c for k, c in panel.inputs.items() if k != DATASET]
    for event in compat.on_each([c.input for c in fields], on_change, comps + [state], outputs + [state]):
        settle(event)
    folder = panel.inputs[DATASET]
    settle(folder.input(on_folder, comps, [panel.inputs["images"]] + outputs + [state], **live))
    settle(panel.preset.input(on_preset, [panel.preset] + comps, comps + [panel.preset_note] + outputs + [state],
                              **live))
    if compat.GRADIO_MAJOR < 4:  # leaving a field, or Enter, always ends on what was typed
        for comp in panel.inputs.values():
            if isinstance(comp, gr.Textbox):
                for trigger in (comp.blur, comp.submit):
                    trigger(on_settle, comps + [state], outputs + [state], **live)
