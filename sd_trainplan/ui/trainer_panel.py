"""The trainer's two tabs, built inside the page's Blocks: Train (the fields, Start / Stop / Resume,
progress, loss, samples, the file written) and LR range test (sweep settings, the curve, the
bounds and "Use these bounds"). Components only; trainer_events.py wires them.

Standalone, the fields start on a demo run that finishes on a CPU in about a minute: the
built-in tiny model and the sample images shipped in samples/shapes, at 64 px.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Dict, List

import gradio as gr

from ..train.config import TrainConfig
from .hooks import UiHooks
from .job_view import loss_chart_html, progress_html, range_html
from .train_fields import SECTIONS, TRAIN_KEYS, TRAIN_WIDGETS, TrainWidget, field_values, hidden_values, shown_for

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "shapes"
HOST_MODEL = "empty: the model the host has loaded"


@dataclass
class TrainerPanel:
    inputs: Dict[str, Any]          # by TrainConfig field
    messages: Dict[str, Any]
    cells: Dict[str, Any]           # the column around each field and its message (shown per method)
    hidden: Any                     # gr.State: settings without a field, set by Apply
    status: Any
    start: Any
    stop: Any
    resume: Any
    progress: Any
    loss_plot: Any
    samples: Any
    result: Any

    def input_list(self) -> List[Any]:
        return [self.inputs[k] for k in TRAIN_KEYS]


@dataclass
class RangePanel:
    max_lr: Any
    steps: Any
    status: Any
    start: Any
    stop: Any
    progress: Any
    plot: Any
    use_bounds: Any
    use_message: Any


def is_demo(hooks: UiHooks, model: str = "") -> bool:
    return hooks.load_adapter is None and hooks.host_name == "standalone" and model in ("", "tiny")


def start_config(hooks: UiHooks, model: str = "") -> TrainConfig:
    """What the fields show before Apply: a quick demo run standalone, plain defaults otherwise."""
    base = TrainConfig(output=hooks.output_dir)
    if not is_demo(hooks, model):
        return base.replace(model=model)
    return base.replace(method="dreambooth", model="tiny", data=str(SAMPLES), name="demo", resolution=64, steps=40,
                        batch_size=2, lr=1e-3, instance_prompt="[name], [filewords]", val_split=0.25, val_every=5,
                        sample_every=20, sample_prompt="[name], red circle, plain background", sample_steps=20)


def notice_html(hooks: UiHooks, model: str = "") -> str:
    if hooks.notice:
        return f'<div class="stp-notice">{hooks.notice}</div>'
    if is_demo(hooks, model):
        return ('<div class="stp-notice stp-notice-demo" id="stp_demo_notice"><b>Demo mode.</b> No model was given, so'
                ' the trainer uses the built-in <b>tiny</b> model (random weights, for trying the workflow) and the'
                ' 12 sample images that ship with sd_trainplan (<code>samples/shapes</code>) at 64 px: a run of 40'
                ' updates takes well under a minute on a CPU. For real training put a diffusers folder or a <code>.safetensors</code> checkpoint in'
                ' <b>Model</b> and your images in <b>Dataset folder</b>.</div>')
    return ""


def _component(w: TrainWidget, value: Any, placeholder: str = "") -> Any:
    common = dict(label=w.label, elem_id=w.elem_id, interactive=True, **({"info": w.info} if w.info else {}))
    if w.kind == "text":
        return gr.Textbox(value=value, placeholder=placeholder or w.placeholder, lines=1, max_lines=1, **common)
    if w.kind == "radio":
        return gr.Radio(choices=list(w.choices), value=value, **common)
    if w.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    return gr.Dropdown(choices=list(w.choices), value=value, allow_custom_value=w.custom, **common)


def _fields(cfg: TrainConfig, hooks: UiHooks, inputs: Dict[str, Any], messages: Dict[str, Any],
            cells: Dict[str, Any]) -> None:
    values = field_values(cfg)
    for section, rows in groupby(TRAIN_WIDGETS, key=lambda row: row[0].section):
        gr.HTML(f'<div class="stp-section-title">{SECTIONS[section]}</div>', elem_classes=["stp-section"])
        for row in rows:
            with gr.Row(elem_classes=["stp-row"]):
                for w in row:
                    visible = shown_for(w, cfg.method)
                    with gr.Column(scale=w.width, min_width=110, elem_classes=["stp-cell"], visible=visible) as cell:
                        hosted = w.key == "model" and hooks.load_adapter is not None
                        inputs[w.key] = _component(w, values[w.key], HOST_MODEL if hosted else "")
                        messages[w.key] = gr.HTML("", elem_id=w.msg_id, elem_classes=["stp-msg-box"], visible=False)
                    cells[w.key] = cell


def build_train_tab(hooks: UiHooks, model: str = "") -> TrainerPanel:
    cfg = start_config(hooks, model)
    inputs: Dict[str, Any] = {}
    messages: Dict[str, Any] = {}
    cells: Dict[str, Any] = {}
    with gr.Row(elem_classes=["stp-header"]):
        gr.HTML('<div class="stp-title"><h2>Trainer</h2><p>Runs the plan: "Apply to trainer" on the Plan tab fills'
                " these fields, and each stays editable. Start checks every field and the dataset first; Stop saves"
                " a checkpoint that Resume continues.</p></div>")
    notice = notice_html(hooks, model)
    if notice:
        gr.HTML(notice, elem_id="stp_train_notice")
    with gr.Row(elem_classes=["stp-main"]):
        with gr.Column(scale=6, min_width=340, elem_id="stp_train_inputs", elem_classes=["stp-inputs"]):
            _fields(cfg, hooks, inputs, messages, cells)
        with gr.Column(scale=5, min_width=400, elem_id="stp_train_outputs", elem_classes=["stp-results"]):
            with gr.Row(elem_classes=["stp-buttons"]):
                start = gr.Button("Start", variant="primary", elem_id="stp_train_start", visible=hooks.can_train)
                stop = gr.Button("Stop", variant="stop", elem_id="stp_train_stop", visible=hooks.can_train)
                resume = gr.Button("Resume", variant="secondary", elem_id="stp_train_resume", visible=hooks.can_train)
            status = gr.HTML("", elem_id="stp_train_status")
            progress = gr.HTML(progress_html(None), elem_id="stp_train_progress")
            result = gr.HTML("", elem_id="stp_train_result")
            loss_plot = gr.HTML(loss_chart_html(None), elem_id="stp_train_loss_plot")
            samples = gr.Gallery(value=[], label="Samples", show_label=True, elem_id="stp_train_samples", columns=4,
                                 height=220, object_fit="contain", allow_preview=True)
    hidden = gr.State(hidden_values(cfg))
    return TrainerPanel(inputs, messages, cells, hidden, status, start, stop, resume, progress, loss_plot, samples,
                        result)


def build_range_tab(hooks: UiHooks) -> RangePanel:
    with gr.Row(elem_classes=["stp-header"]):
        gr.HTML('<div class="stp-title"><h2>LR range test</h2><p>One short run whose learning rate rises linearly'
                " from 0 to a maximum, scored by the deterministic validation loss (Smith 2017, as seed 004 runs"
                " it). Where the loss starts to fall is the lower bound, where it flattens the upper one. It uses"
                " the Train tab's model, data, method, batch size and resolution.</p></div>")
    if hooks.notice:  # the range test trains the host's model too: the notice goes with its button as well
        gr.HTML(notice_html(hooks), elem_id="stp_lr_range_notice")
    with gr.Row(elem_classes=["stp-main"]):
        with gr.Column(scale=4, min_width=300, elem_classes=["stp-inputs"]):
            gr.HTML('<div class="stp-section-title">Sweep</div>', elem_classes=["stp-section"])
            with gr.Row(elem_classes=["stp-row"]):
                max_lr = gr.Textbox(label="Maximum LR", elem_id="stp_lr_range_max", lines=1, max_lines=1,
                                    placeholder="the planner's range-test max LR, else the Train tab's LR")
                steps = gr.Textbox(label="Sweep length (updates)", elem_id="stp_lr_range_steps", lines=1, max_lines=1,
                                   placeholder="the planner's sweep_steps, else Weight updates")
            with gr.Row(elem_classes=["stp-buttons"]):
                start = gr.Button("Run the range test", variant="primary", elem_id="stp_lr_range_start",
                                  visible=hooks.can_train, scale=2)
                stop = gr.Button("Stop", variant="stop", elem_id="stp_lr_range_stop", visible=hooks.can_train, scale=1)
            status = gr.HTML("", elem_id="stp_lr_range_status")
            progress = gr.HTML(progress_html(None, "lr_range"), elem_id="stp_lr_range_progress")
            use_bounds = gr.Button("Use these bounds in the plan", variant="secondary", elem_id="stp_lr_use_bounds",
                                   visible=False)
            use_message = gr.HTML("", elem_id="stp_lr_use_bounds_msg")
        with gr.Column(scale=7, min_width=400, elem_classes=["stp-results"]):
            plot = gr.HTML(range_html(None), elem_id="stp_lr_range_plot")
    return RangePanel(max_lr, steps, status, start, stop, progress, plot, use_bounds, use_message)
